"""LSH banding: band keys, candidate pairs from equal keys, and signature agreement counts.

A band of r uint32 values hashes to one uint64 key (a seeded polynomial over the values, mixed
with the SplitMix64 finaliser); documents with equal keys in any band are candidates (Indyk &
Motwani 1998; Leskovec et al., Mining of Massive Datasets, ch. 3). Keys of one band for the
whole corpus are the only corpus-sized state, 8 bytes per document.
"""

from __future__ import annotations

import numpy as np

_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x *= _MIX1
    x ^= x >> np.uint64(27)
    x *= _MIX2
    return x ^ (x >> np.uint64(31))


def band_keys(band: np.ndarray, band_index: int) -> np.ndarray:
    """uint64 key per row of a [n, r] uint32 band (wrapping uint64 arithmetic is intended)."""
    start = np.uint64((band_index + 1) * int(_MIX1) % (1 << 64))
    key = np.full(band.shape[0], start, dtype=np.uint64)
    for col in range(band.shape[1]):
        key = _mix(key ^ band[:, col].astype(np.uint64))
    return key


def candidate_pairs(keys: np.ndarray, order_rank: np.ndarray, all_pairs_max: int) -> np.ndarray:
    """Candidate (i, j) pairs, i < j by ``order_rank``, from documents sharing a key.

    Buckets up to ``all_pairs_max`` members give every pair; larger ones (mostly boilerplate
    copies) give a chain in rank order plus a star from the oldest member, which keeps the
    pair count linear in the bucket size.
    """
    order = np.lexsort((order_rank, keys))
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    sizes = np.diff(np.r_[starts, keys.size])
    pairs = []
    small = sizes <= all_pairs_max
    for size in np.unique(sizes[small & (sizes > 1)]):
        firsts = starts[small & (sizes == size)]
        i, j = np.triu_indices(int(size), k=1)
        pairs.append(np.stack([order[firsts[:, None] + i], order[firsts[:, None] + j]], -1))
    for start, size in zip(starts[~small], sizes[~small], strict=True):
        members = order[start : start + size]
        chain = np.stack([members[:-1], members[1:]], -1)
        star = np.stack([np.full(size - 2, members[0]), members[2:]], -1)
        pairs.append(np.concatenate([chain, star]))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    return np.concatenate([p.reshape(-1, 2) for p in pairs]).astype(np.int64)


def unique_pairs(pairs: np.ndarray) -> np.ndarray:
    """Distinct pairs, each as (min, max)."""
    if pairs.size == 0:
        return pairs.reshape(0, 2)
    return np.unique(np.sort(pairs, axis=1), axis=0)
