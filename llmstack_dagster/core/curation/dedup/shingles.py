"""Compiled shingling: UTF-8 text -> 61-bit hashes of its word or character n-grams.

Word mode hashes each word (lowercased alphanumeric run, see :mod:`.text`) with seeded FNV-1a
over its code points and a SplitMix64 finaliser; char mode uses the code points of the
normalised text (words joined by single spaces). An n-gram of tokens t_0..t_{n-1} hashes to the
polynomial sum(t_i * B^(n-1-i)) mod 2^61 - 1 with a seeded base B, computed as a rolling hash.
A text with fewer than n tokens (but at least one) is one shingle; an empty one has none.
"""

from __future__ import annotations

import numba
import numpy as np

from llmstack_dagster.core.curation.dedup.mersenne import MERSENNE_61, fold61, mix64, mulmod61
from llmstack_dagster.core.curation.dedup.utf8 import decode_at

_FNV_PRIME = np.uint64(0x100000001B3)
_SPACE_TOKEN = np.uint64(33)  # code point of " " plus one, so that no token is zero


@numba.njit(cache=True)
def _tokens(
    data: np.ndarray, start: int, end: int, alnum: np.ndarray, lower: np.ndarray,
    char_mode: bool, seed: np.uint64, out: np.ndarray,
) -> int:
    """Write the text's tokens (word hashes or code points + 1) to ``out``; return the count."""
    n = 0
    in_word = False
    h = seed
    i = start
    while i < end:
        cp, size = decode_at(data, i)
        i += size
        if cp < alnum.shape[0] and alnum[cp]:
            cp = lower[cp]
            if char_mode:
                if not in_word and n > 0:
                    out[n] = _SPACE_TOKEN
                    n += 1
                out[n] = np.uint64(cp + 1)
                n += 1
            else:
                if not in_word:
                    h = seed
                h = (h ^ np.uint64(cp)) * _FNV_PRIME
            in_word = True
        elif in_word:
            if not char_mode:
                out[n] = fold61(mix64(h))
                n += 1
            in_word = False
    if in_word and not char_mode:
        out[n] = fold61(mix64(h))
        n += 1
    return n


@numba.njit(cache=True)
def doc_shingles(
    data: np.ndarray, start: int, end: int, alnum: np.ndarray, lower: np.ndarray,
    char_mode: bool, ngram: int, base: np.uint64, seed: np.uint64,
    tokens: np.ndarray, out: np.ndarray,
) -> int:
    """Write the shingle hashes of ``data[start:end]`` to ``out``; return how many.

    ``tokens`` and ``out`` are scratch arrays of at least ``end - start + 1`` entries.
    """
    n = _tokens(data, start, end, alnum, lower, char_mode, seed, tokens)
    if n == 0:
        return 0
    width = min(ngram, n)
    s = np.uint64(0)
    top = np.uint64(1)  # B^(width-1)
    for i in range(width):
        s = fold61(mulmod61(s, base) + tokens[i])
        if i > 0:
            top = mulmod61(top, base)
    out[0] = s
    count = n - width + 1
    for j in range(1, count):
        s = fold61(s + MERSENNE_61 - mulmod61(tokens[j - 1], top))
        s = fold61(mulmod61(s, base) + tokens[j + width - 1])
        out[j] = s
    return count


@numba.njit(cache=True)
def batch_shingles(
    data: np.ndarray, offsets: np.ndarray, alnum: np.ndarray, lower: np.ndarray,
    char_mode: bool, ngram: int, base: np.uint64, seed: np.uint64,
) -> tuple[np.ndarray, np.ndarray]:
    """Shingle hashes of every text, CSR style: (values, int64 offsets of n + 1)."""
    n = offsets.shape[0] - 1
    total = offsets[n] - offsets[0] + n
    values = np.empty(total, np.uint64)
    tokens = np.empty(total, np.uint64)
    out_offsets = np.zeros(n + 1, np.int64)
    for d in range(n):
        w = out_offsets[d]
        count = doc_shingles(
            data, offsets[d], offsets[d + 1], alnum, lower, char_mode, ngram, base, seed,
            tokens, values[w:],
        )
        out_offsets[d + 1] = w + count
    return values[: out_offsets[n]], out_offsets
