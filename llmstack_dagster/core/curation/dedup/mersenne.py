"""Arithmetic modulo the Mersenne prime 2^61 - 1 in uint64, compiled with numba.

numpy's uint64 multiply silently wraps, so ``a * x % p`` with 61-bit operands is wrong there.
We split both operands into 32-bit halves, fold the partial products using 2^61 = 1 (mod p),
and so get the exact residue without 128-bit integers.
"""

from __future__ import annotations

import numba
import numpy as np

MERSENNE_61 = np.uint64((1 << 61) - 1)
_LO32 = np.uint64(0xFFFFFFFF)
_LO29 = np.uint64((1 << 29) - 1)


@numba.njit(inline="always", cache=True)
def fold61(r: np.uint64) -> np.uint64:
    """Reduce r < 2^64 modulo 2^61 - 1."""
    r = (r & MERSENNE_61) + (r >> np.uint64(61))
    r = (r & MERSENNE_61) + (r >> np.uint64(61))
    if r >= MERSENNE_61:
        r -= MERSENNE_61
    return r


@numba.njit(inline="always", cache=True)
def mulmod61(a: np.uint64, x: np.uint64) -> np.uint64:
    """a * x mod 2^61 - 1 for a, x < 2^61."""
    a_lo = a & _LO32
    a_hi = a >> np.uint64(32)
    x_lo = x & _LO32
    x_hi = x >> np.uint64(32)
    lo = a_lo * x_lo  # < 2^64
    mid = a_hi * x_lo + a_lo * x_hi  # < 2^62, weight 2^32
    hi = a_hi * x_hi  # < 2^58, weight 2^64 = 8 (mod p)
    r = (lo & MERSENNE_61) + (lo >> np.uint64(61))
    r += (mid & _LO29) << np.uint64(32)
    r += mid >> np.uint64(29)
    r += hi << np.uint64(3)
    return fold61(r)


@numba.njit(inline="always", cache=True)
def mix64(x: np.uint64) -> np.uint64:
    """A 64-bit avalanche finaliser (the constants of SplitMix64, Steele et al. 2014)."""
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x
