"""Hash-partitioned files: what the map and reduce tasks of a distributed shuffle exchange.

A map task (writer ``w``) splits its rows by partition and writes one Parquet file per
non-empty partition, ``{folder}/p-{p:05d}/w-{w}.parquet``; the reduce task of partition ``p``
reads every file of ``p-{p:05d}`` in writer order. Files go through
:class:`~llmstack_dagster.core.storage.Storage`, so the shuffle runs on any fsspec root, and a
re-run task overwrites its own files atomically (retries are idempotent).
"""

from __future__ import annotations

import posixpath

import numpy as np
import pyarrow as pa

from llmstack_dagster.core.curation.dedup.lsh import band_keys
from llmstack_dagster.core.storage import Storage


def hash_partition(keys: np.ndarray, salt: np.ndarray | int, partitions: int) -> np.ndarray:
    """Partition of each uint64 key, ``hash(salt, key) % partitions`` (int64)."""
    halves = np.ascontiguousarray(keys, dtype=np.uint64).view(np.uint32).reshape(-1, 2)
    salts = np.broadcast_to(np.asarray(salt, dtype=np.uint64), keys.shape)
    mixed = band_keys(halves, 0) ^ salts
    return (band_keys(mixed.view(np.uint32).reshape(-1, 2), 1) % np.uint64(partitions)).astype(
        np.int64
    )


def partition_folder(folder: str, partition: int) -> str:
    return posixpath.join(folder, f"p-{partition:05d}")


def write_partitions(
    storage: Storage, folder: str, writer: str, table: pa.Table, partition: np.ndarray,
    partitions: int,
) -> int:
    """Write ``table``'s rows to their partitions' files; returns the bytes written."""
    order = np.argsort(partition, kind="stable")
    bounds = np.searchsorted(partition[order], np.arange(partitions + 1))
    written = 0
    for p in range(partitions):
        start, end = int(bounds[p]), int(bounds[p + 1])
        if end > start:
            rel = posixpath.join(partition_folder(folder, p), f"w-{writer}.parquet")
            written += storage.write_table(rel, table.take(pa.array(order[start:end])))
    return written


def read_partition(storage: Storage, folder: str, partition: int, schema: pa.Schema) -> pa.Table:
    """Every writer's rows of one partition, in writer order (empty table with ``schema``)."""
    files = storage.list(partition_folder(folder, partition), suffix=".parquet")
    tables = [storage.read_table(rel) for rel in files]
    return pa.concat_tables(tables).cast(schema) if tables else schema.empty_table()
