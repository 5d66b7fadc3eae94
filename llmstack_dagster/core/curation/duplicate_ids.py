"""Duplicate ids across a partition's shards, in memory bounded by a bucket, not the corpus.

Each id becomes a 128-bit xxh3 digest (two uint64) with its position (shard, row). When the
partition has more rows than ``bucket_rows``, the digests are spilled to local files by their
top bits, so a bucket holds about ``bucket_rows`` of them; each bucket is then sorted on its
own and equal digests side by side are duplicates. Memory is 24 bytes per row of one bucket
(48 MB at the default 2M rows), whatever the partition's size. Two different ids share a
128-bit digest with probability about n^2 / 2^129 (1e-23 for 100M ids): digests are compared,
not strings.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import xxhash

from llmstack_dagster.core.storage import ShardInfo, Storage

DEFAULT_BUCKET_ROWS = 2_000_000
_RECORD = np.dtype([("hi", "<u8"), ("lo", "<u8"), ("pos", "<i8")])
_ROW_BITS = 32  # position = shard << 32 | row


@dataclass(frozen=True)
class DuplicateRows:
    """Positions of the repeated occurrences (each id's first occurrence is not listed)."""

    shard: np.ndarray  # index into the shard list
    row: np.ndarray  # row inside that shard
    first_shard: np.ndarray  # where the kept (first) occurrence is
    first_row: np.ndarray

    def __len__(self) -> int:
        return len(self.shard)

    def rows_of(self, shard: int) -> np.ndarray:
        return self.row[self.shard == shard]


def _digests(ids: list[str], shard: int, first_row: int) -> np.ndarray:
    joined = b"".join(xxhash.xxh3_128_digest(doc_id.encode("utf-8")) for doc_id in ids)
    words = np.frombuffer(joined, dtype=">u8").reshape(-1, 2)
    out = np.empty(len(ids), dtype=_RECORD)
    out["hi"], out["lo"] = words[:, 0], words[:, 1]
    out["pos"] = (shard << _ROW_BITS) + first_row + np.arange(len(ids))
    return out


def _iter_digests(
    storage: Storage, shards: list[ShardInfo], column: str
) -> Iterator[np.ndarray]:
    for index, shard in enumerate(shards):
        for batch_start, batch in _batches(storage, shard, column):
            yield _digests(batch, index, batch_start)


def _batches(storage: Storage, shard: ShardInfo, column: str) -> Iterator[tuple[int, list[str]]]:
    start = 0
    for batch in storage.iter_batches(shard.path, columns=[column], batch_size=65536):
        ids = batch.column(0).to_pylist()
        yield start, ids
        start += len(ids)


def _repeats(records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions of repeated occurrences, position of the first occurrence of each)."""
    if len(records) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    records = records[np.lexsort((records["pos"], records["lo"], records["hi"]))]
    same = (records["hi"][1:] == records["hi"][:-1]) & (records["lo"][1:] == records["lo"][:-1])
    repeated = np.flatnonzero(same) + 1
    # the first occurrence of each run: the last index before it that starts a run
    run_start = np.flatnonzero(np.r_[True, ~same])
    first = run_start[np.searchsorted(run_start, repeated, side="right") - 1]
    return records["pos"][repeated], records["pos"][first]


def find_duplicate_ids(
    storage: Storage,
    shards: list[ShardInfo],
    column: str = "id",
    bucket_rows: int = DEFAULT_BUCKET_ROWS,
) -> DuplicateRows:
    """Every repeated value of ``column`` across ``shards``, in shard and row order."""
    total = sum(s.rows for s in shards)
    buckets = max(1, math.ceil(total / bucket_rows))
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    if buckets == 1:
        chunks = list(_iter_digests(storage, shards, column))
        if chunks:
            parts.append(_repeats(np.concatenate(chunks)))
    else:
        with tempfile.TemporaryDirectory(prefix="duplicate-ids-") as tmp:
            paths = [os.path.join(tmp, f"b{b:05d}.bin") for b in range(buckets)]
            for records in _iter_digests(storage, shards, column):
                bucket = (records["hi"] >> np.uint64(40)) % np.uint64(buckets)
                for b in np.unique(bucket):
                    with open(paths[int(b)], "ab") as handle:
                        handle.write(records[bucket == b].tobytes())
            for path in paths:
                if os.path.exists(path):
                    parts.append(_repeats(np.fromfile(path, dtype=_RECORD)))
    repeated = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    first = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
    order = np.argsort(repeated, kind="stable")
    repeated, first = repeated[order], first[order]
    mask = (1 << _ROW_BITS) - 1
    return DuplicateRows(
        shard=repeated >> _ROW_BITS,
        row=repeated & mask,
        first_shard=first >> _ROW_BITS,
        first_row=first & mask,
    )
