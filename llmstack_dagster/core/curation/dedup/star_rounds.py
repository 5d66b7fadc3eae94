"""Large-star / small-star rounds over partitioned edge files, one engine task per partition.

The edge set is kept *canonical*: oriented ``larger -> smaller`` and partitioned by the larger
node, so each edge lives in exactly one partition. A round is three maps over partitions:
spread (distinct edges, their digest, both directions partitioned by source, which gives
large-star whole neighbourhoods), large-star, small-star (whose input, grouped by the larger
node, is exactly the canonical layout). The rounds stop when the set's digest stops changing.
"""

from __future__ import annotations

import posixpath
from functools import partial

import numpy as np
import pyarrow as pa

from llmstack_dagster.core.curation.dedup.star_components import (
    Edges,
    edge_digest,
    large_star,
    oriented,
    small_star,
    symmetric,
)
from llmstack_dagster.core.scale.shard_map import ShardMap
from llmstack_dagster.core.scale.shuffle import hash_partition, read_partition, write_partitions
from llmstack_dagster.core.storage import Storage

EDGE_SCHEMA = pa.schema([pa.field("src", pa.int64()), pa.field("dst", pa.int64())])


def _write(storage: Storage, folder: str, writer: str, edges: Edges, partitions: int) -> None:
    src, dst = edges
    table = pa.table({"src": src, "dst": dst}, schema=EDGE_SCHEMA)
    part = hash_partition(src.astype(np.uint64), 0, partitions)
    write_partitions(storage, folder, writer, table, part, partitions)


def _read(storage: Storage, folder: str, partition: int) -> Edges:
    table = read_partition(storage, folder, partition, EDGE_SCHEMA)
    return table["src"].to_numpy(), table["dst"].to_numpy()


def write_canonical(
    storage: Storage, folder: str, writer: str, src: np.ndarray, dst: np.ndarray, partitions: int
) -> None:
    """Add undirected edges to the canonical set of round 0 under ``folder``."""
    _write(storage, posixpath.join(folder, "r000", "set"), writer, oriented(src, dst), partitions)


def _spread(storage: Storage, folder: str, partitions: int, p: int) -> tuple[int, int]:
    edges = oriented(*_read(storage, posixpath.join(folder, "set"), p))
    _write(storage, posixpath.join(folder, "ls"), f"p{p:05d}", symmetric(*edges), partitions)
    return edge_digest(*edges)


def _large(storage: Storage, folder: str, partitions: int, p: int) -> None:
    edges = large_star(*_read(storage, posixpath.join(folder, "ls"), p))
    _write(storage, posixpath.join(folder, "ss"), f"p{p:05d}", edges, partitions)


def _small(storage: Storage, folder: str, next_folder: str, partitions: int, p: int) -> None:
    edges = small_star(*oriented(*_read(storage, posixpath.join(folder, "ss"), p)))
    _write(storage, posixpath.join(next_folder, "set"), f"p{p:05d}", edges, partitions)


def _combined(digests: list[tuple[int, int]]) -> tuple[int, int]:
    count = sum(c for c, _ in digests)
    mixed = 0
    for _, d in digests:
        mixed ^= d
    return count, mixed


def partitioned_components(
    storage: Storage, shard_map: ShardMap, folder: str, partitions: int, max_rounds: int = 64
) -> Edges:
    """Run rounds from ``{folder}/r000/set`` until stable; (node, root) of every node on an
    edge, sorted by node (the root is the smallest node of the component)."""
    parts = list(range(partitions))
    previous: tuple[int, int] | None = None
    for r in range(max_rounds):
        here = posixpath.join(folder, f"r{r:03d}")
        digest = _combined(shard_map.map(partial(_spread, storage, here, partitions), parts))
        if digest == previous:
            edges = [_read(storage, posixpath.join(here, "set"), p) for p in parts]
            node, root = oriented(
                np.concatenate([e[0] for e in edges]), np.concatenate([e[1] for e in edges])
            )
            return node, root
        previous = digest
        shard_map.map(partial(_large, storage, here, partitions), parts)
        following = posixpath.join(folder, f"r{r + 1:03d}")
        shard_map.map(partial(_small, storage, here, following, partitions), parts)
    raise RuntimeError(f"large-star/small-star did not converge in {max_rounds} rounds")
