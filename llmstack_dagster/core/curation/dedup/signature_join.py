"""Signature agreement of document pairs spread over many shards, as a two-hop shuffle join.

A pair ``(a, b)`` names each document by global id and by place (fingerprint shard, row).
Hop A, one task per shard ``s``: the pairs whose ``a`` lives in ``s`` get ``a``'s MinHash
signature attached (read from ``s`` only) and move to ``b``'s shard. Hop B, one task per
shard: ``b``'s signature is read there and the agreeing values are counted. No task ever
holds more than one shard's signatures plus the pairs that touch that shard.
"""

from __future__ import annotations

import posixpath
from functools import partial

import numpy as np
import pyarrow as pa

from llmstack_dagster.core.curation.dedup.config import DedupConfig
from llmstack_dagster.core.curation.dedup.fingerprints import band_column
from llmstack_dagster.core.scale.shard_map import ShardMap
from llmstack_dagster.core.scale.shuffle import read_partition, write_partitions
from llmstack_dagster.core.storage import ShardInfo, Storage

PAIR_SCHEMA = pa.schema(
    [
        pa.field("gid_a", pa.int64()),
        pa.field("gid_b", pa.int64()),
        pa.field("shard_a", pa.int32()),
        pa.field("row_a", pa.int32()),
        pa.field("shard_b", pa.int32()),
        pa.field("row_b", pa.int32()),
    ]
)
MATCH_SCHEMA = pa.schema(
    [pa.field("gid_a", pa.int64()), pa.field("gid_b", pa.int64()), pa.field("matches", pa.int32())]
)


def shard_signatures(
    storage: Storage, shard: ShardInfo, config: DedupConfig, rows: np.ndarray
) -> np.ndarray:
    """uint32 signatures [len(rows), num_perm] of the given rows of one fingerprint shard."""
    columns = [band_column(b) for b in range(config.num_bands)]
    table = storage.read_table(shard.path, columns=columns)
    take = pa.array(rows.astype(np.int64))
    bands = [
        table[c].combine_chunks().take(take).flatten().to_numpy().reshape(-1, config.rows_per_band)
        for c in columns
    ]
    return np.concatenate(bands, axis=1) if bands else np.zeros((len(rows), 0), np.uint32)


def write_pairs(
    storage: Storage, folder: str, writer: str, pairs: pa.Table, shards: int
) -> int:
    """Route pairs (``PAIR_SCHEMA``) to the hop-A partition of ``a``'s shard."""
    hop_a = posixpath.join(folder, "a")
    return write_partitions(
        storage, hop_a, writer, pairs, pairs["shard_a"].to_numpy().astype(np.int64), shards
    )


def _distinct(table: pa.Table) -> pa.Table:
    """One row per (gid_a, gid_b), in that order (the same pair may come from many bands)."""
    if table.num_rows == 0:
        return table
    keys = np.stack([table["gid_a"].to_numpy(), table["gid_b"].to_numpy()], 1)
    _, first = np.unique(keys, axis=0, return_index=True)
    return table.take(pa.array(first))


def _hop_a(
    storage: Storage, shards: list[ShardInfo], folder: str, config: DedupConfig, shard: int
) -> int:
    pairs = _distinct(read_partition(storage, posixpath.join(folder, "a"), shard, PAIR_SCHEMA))
    if pairs.num_rows == 0:
        return 0
    sig = shard_signatures(storage, shards[shard], config, pairs["row_a"].to_numpy())
    moved = pa.table(
        {
            "gid_a": pairs["gid_a"],
            "gid_b": pairs["gid_b"],
            "row_b": pairs["row_b"],
            "sig_a": pa.FixedSizeListArray.from_arrays(pa.array(sig.ravel()), config.num_perm),
        }
    )
    write_partitions(
        storage, posixpath.join(folder, "b"), f"s{shard:05d}", moved,
        pairs["shard_b"].to_numpy().astype(np.int64), len(shards),
    )  # fmt: skip
    return pairs.num_rows


def _hop_b(
    storage: Storage, shards: list[ShardInfo], folder: str, config: DedupConfig, shard: int
) -> int:
    schema = pa.schema(
        [
            pa.field("gid_a", pa.int64()),
            pa.field("gid_b", pa.int64()),
            pa.field("row_b", pa.int32()),
            pa.field("sig_a", pa.list_(pa.uint32(), config.num_perm)),
        ]
    )
    moved = read_partition(storage, posixpath.join(folder, "b"), shard, schema)
    if moved.num_rows == 0:
        return 0
    sig_b = shard_signatures(storage, shards[shard], config, moved["row_b"].to_numpy())
    sig_a = moved["sig_a"].combine_chunks().flatten().to_numpy().reshape(-1, config.num_perm)
    matches = (sig_a == sig_b).sum(axis=1).astype(np.int32)
    out = pa.table(
        {"gid_a": moved["gid_a"], "gid_b": moved["gid_b"], "matches": pa.array(matches)},
        schema=MATCH_SCHEMA,
    )
    storage.write_table(posixpath.join(folder, "out", f"s-{shard:05d}.parquet"), out)
    return moved.num_rows


def join_agreements(
    storage: Storage,
    shard_map: ShardMap,
    shards: list[ShardInfo],
    folder: str,
    config: DedupConfig,
) -> pa.Table:
    """Run both hops over the pairs written with :func:`write_pairs`; (gid_a, gid_b, matches)
    of every distinct pair, sorted by (gid_a, gid_b)."""
    involved = sorted(
        int(name.removeprefix("p-")) for name in storage.entries(posixpath.join(folder, "a"))
    )
    shard_map.map(partial(_hop_a, storage, shards, folder, config), involved)
    targets = sorted(
        int(name.removeprefix("p-")) for name in storage.entries(posixpath.join(folder, "b"))
    )
    shard_map.map(partial(_hop_b, storage, shards, folder, config), targets)
    parts = [storage.read_table(rel) for rel in storage.list(posixpath.join(folder, "out"))]
    table = pa.concat_tables(parts) if parts else MATCH_SCHEMA.empty_table()
    return table.sort_by([("gid_a", "ascending"), ("gid_b", "ascending")])
