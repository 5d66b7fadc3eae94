"""Union-find (disjoint sets) over integer ids, compiled: path halving + union by index."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def _find(parent: np.ndarray, x: int) -> int:
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@numba.njit(cache=True)
def _union_all(parent: np.ndarray, left: np.ndarray, right: np.ndarray) -> None:
    for i in range(left.shape[0]):
        ra = _find(parent, left[i])
        rb = _find(parent, right[i])
        if ra != rb:
            # the smaller index becomes the root, so roots do not depend on edge order
            if ra < rb:
                parent[rb] = ra
            else:
                parent[ra] = rb


@numba.njit(cache=True)
def _roots(parent: np.ndarray) -> np.ndarray:
    out = np.empty(parent.shape[0], np.int64)
    for x in range(parent.shape[0]):
        out[x] = _find(parent, x)
    return out


def connected_components(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Root (the smallest member index) of every node 0..n-1, given undirected edges."""
    parent = np.arange(n, dtype=np.int64)
    _union_all(parent, left.astype(np.int64), right.astype(np.int64))
    return _roots(parent)
