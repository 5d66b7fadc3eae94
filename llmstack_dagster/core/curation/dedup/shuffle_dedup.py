"""Global fuzzy dedup as a distributed shuffle; the removal list equals the local runner's.

1. Global ids: every document's rank in (created, id) order, so the smallest id of a
   component is its oldest document (the one the local runner keeps).
2. Map, one task per fingerprint shard: band keys a few bands at a time; each (band, key,
   id) row goes to partition ``hash(band, key) % P``, each exact hash to ``hash(hash) % P``.
3. Reduce, one task per partition: a bucket lies whole in one partition, so
   :func:`~.lsh.candidate_pairs` gives the same pairs as over the whole corpus; exact groups
   give :func:`~.clusters.exact_duplicate_edges`. Candidates are verified by their signature
   agreement through :mod:`.signature_join`.
4. Components: union-find in one large-memory task (the parent array is 8 bytes a document)
   or, above ``max_edges_in_memory`` edges, large-star/small-star rounds (:mod:`.star_rounds`).
5. The removal table, its statistics and the manifest come from the local runner's own
   functions (:mod:`.clusters`), so both backends write the same bytes.
"""

from __future__ import annotations

import posixpath
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field

from llmstack_dagster.core.curation.dedup.clusters import (
    ASSET,
    CODE_VERSION,
    NEAR,
    cluster_removals,
    exact_duplicate_edges,
    global_index,
    removal_manifest,
)
from llmstack_dagster.core.curation.dedup.config import DedupConfig
from llmstack_dagster.core.curation.dedup.fingerprints import band_column
from llmstack_dagster.core.curation.dedup.lsh import band_keys, candidate_pairs
from llmstack_dagster.core.curation.dedup.signature_join import (
    PAIR_SCHEMA,
    join_agreements,
    write_pairs,
)
from llmstack_dagster.core.curation.dedup.star_components import roots_from_stars
from llmstack_dagster.core.curation.dedup.star_rounds import (
    partitioned_components,
    write_canonical,
)
from llmstack_dagster.core.curation.dedup.union_find import connected_components
from llmstack_dagster.core.scale.shard_map import ShardMap, StageOptions
from llmstack_dagster.core.scale.shuffle import hash_partition, read_partition, write_partitions
from llmstack_dagster.core.storage import (
    OutputVersion,
    ShardInfo,
    ShardManifest,
    Storage,
    build_version,
    content_version,
)

WORK = ".shuffle"
BAND_ROWS = pa.schema(
    [
        pa.field("band", pa.int16()),
        pa.field("key", pa.uint64()),
        pa.field("gid", pa.int64()),
        pa.field("shard", pa.int32()),
        pa.field("row", pa.int32()),
    ]
)
EXACT_ROWS = pa.schema(
    [
        pa.field("hash_hi", pa.uint64()),
        pa.field("hash_lo", pa.uint64()),
        pa.field("gid", pa.int64()),
    ]
)
EDGE_ROWS = pa.schema([pa.field("gid_a", pa.int64()), pa.field("gid_b", pa.int64())])


class ShuffleConfig(BaseModel):
    """How the dedup shuffle is cut; none of it changes the result."""

    partitions: int = Field(16, ge=1, description="reduce partitions P")
    bands_per_read: int = Field(2, ge=1, description="band columns a map task reads at once")
    max_edges_in_memory: int = Field(
        500_000_000, ge=0, description="above: large-star/small-star rounds, not union-find"
    )
    component_memory_mb: int | None = Field(
        None, ge=1, description="memory asked for the union-find task (default: engine's)"
    )


def clusters_version(fingerprints: dict[str, ShardManifest], config: DedupConfig) -> str:
    """The content version of the local runner: same inputs and settings, same output."""
    settings = {
        "signature": config.signature_params(),
        "threshold": config.threshold,
        "bucket_all_pairs_max": config.bucket_all_pairs_max,
    }
    inputs = [f"{d}:{m.content_version}" for d, m in sorted(fingerprints.items())]
    return content_version(ASSET, CODE_VERSION, settings, inputs)


def find_duplicate_clusters_shuffled(
    storage: Storage,
    fingerprints: dict[str, ShardManifest],
    config: DedupConfig,
    shard_map: ShardMap,
    shuffle: ShuffleConfig,
) -> ShardManifest:
    """:func:`~.clusters.find_duplicate_clusters`, with the corpus-wide work on ``shard_map``."""
    shard_map.require_shared_root(storage.root)

    def build(version: OutputVersion) -> ShardManifest:
        work = version.path(WORK)
        try:
            return _cluster(storage, fingerprints, config, shard_map, shuffle, version.folder, work)
        finally:
            storage.rm(work)

    return build_version(storage, ASSET, None, clusters_version(fingerprints, config), build)


def _map_shard(
    storage: Storage,
    work: str,
    config: DedupConfig,
    partitions: int,
    bands_per_read: int,
    job: tuple[int, ShardInfo],
) -> int:
    """Band rows and exact rows of one shard to their partitions; returns bytes written."""
    index, shard = job
    gid = storage.read_table(posixpath.join(work, "gids", f"s-{index:05d}.parquet"))["gid"]
    gids = gid.to_numpy()
    head = storage.read_table(shard.path, columns=["hash_hi", "hash_lo", "num_shingles"])
    exact = pa.table(
        {"hash_hi": head["hash_hi"], "hash_lo": head["hash_lo"], "gid": gid}, schema=EXACT_ROWS
    )
    hi, lo = exact["hash_hi"].to_numpy(), exact["hash_lo"].to_numpy()
    written = write_partitions(
        storage,
        posixpath.join(work, "exact"),
        f"s{index:05d}",
        exact,
        hash_partition(hi, lo, partitions),
        partitions,
    )
    rows = np.flatnonzero(head["num_shingles"].to_numpy() > 0)
    parts = []
    for first in range(0, config.num_bands, bands_per_read):
        bands = range(first, min(first + bands_per_read, config.num_bands))
        table = storage.read_table(shard.path, columns=[band_column(b) for b in bands])
        for b in bands:
            values = table[band_column(b)].combine_chunks().flatten().to_numpy()
            keys = band_keys(values.reshape(-1, config.rows_per_band)[rows], b)
            parts.append(
                pa.table(
                    {
                        "band": np.full(len(rows), b, np.int16),
                        "key": keys,
                        "gid": gids[rows],
                        "shard": np.full(len(rows), index, np.int32),
                        "row": rows.astype(np.int32),
                    },
                    schema=BAND_ROWS,
                )
            )
    if parts:
        band_rows = pa.concat_tables(parts)
        keys, band = band_rows["key"].to_numpy(), band_rows["band"].to_numpy()
        written += write_partitions(
            storage,
            posixpath.join(work, "bands"),
            f"s{index:05d}",
            band_rows,
            hash_partition(keys, band.astype(np.uint64), partitions),
            partitions,
        )
    return written


def _reduce_partition(storage: Storage, work: str, config: DedupConfig, shards: int, p: int) -> int:
    """Exact edges and candidate pairs of one partition; returns the candidates emitted."""
    exact = read_partition(storage, posixpath.join(work, "exact"), p, EXACT_ROWS)
    gid = exact["gid"].to_numpy()
    pairs = exact_duplicate_edges(exact["hash_hi"].to_numpy(), exact["hash_lo"].to_numpy(), gid)
    edges = pa.table({"gid_a": gid[pairs[:, 0]], "gid_b": gid[pairs[:, 1]]}, schema=EDGE_ROWS)
    storage.write_table(posixpath.join(work, "edges", f"exact-{p:05d}.parquet"), edges)
    rows = read_partition(storage, posixpath.join(work, "bands"), p, BAND_ROWS)
    band = rows["band"].to_numpy()
    found = []
    for b in np.unique(band):
        members = np.flatnonzero(band == b)
        local = candidate_pairs(
            rows["key"].to_numpy()[members],
            rows["gid"].to_numpy()[members],
            config.bucket_all_pairs_max,
        )
        found.append(members[local])
    if not found:
        return 0
    picks = np.concatenate(found)
    cols = {name: rows[name].to_numpy() for name in ("gid", "shard", "row")}
    candidates = pa.table(
        {
            "gid_a": cols["gid"][picks[:, 0]],
            "gid_b": cols["gid"][picks[:, 1]],
            "shard_a": cols["shard"][picks[:, 0]],
            "row_a": cols["row"][picks[:, 0]],
            "shard_b": cols["shard"][picks[:, 1]],
            "row_b": cols["row"][picks[:, 1]],
        },
        schema=PAIR_SCHEMA,
    )
    write_pairs(storage, posixpath.join(work, "verify"), f"r{p:05d}", candidates, shards)
    return candidates.num_rows


def _union_find_task(storage: Storage, work: str, n: int, _: int) -> np.ndarray:
    """The one large-memory task: every edge, union-find over all n ids."""
    edges = [storage.read_table(rel) for rel in storage.list(posixpath.join(work, "edges"))]
    table = pa.concat_tables(edges) if edges else EDGE_ROWS.empty_table()
    return connected_components(n, table["gid_a"].to_numpy(), table["gid_b"].to_numpy())


def _edge_count(storage: Storage, work: str) -> int:
    files = storage.list(posixpath.join(work, "edges"))
    return sum(storage.read_table(rel, columns=["gid_a"]).num_rows for rel in files)


def _components(
    storage: Storage, shard_map: ShardMap, work: str, n: int, shuffle: ShuffleConfig
) -> tuple[np.ndarray, str]:
    """Root (smallest global id of its component) of every global id, and the method used."""
    if _edge_count(storage, work) <= shuffle.max_edges_in_memory:
        options = StageOptions(memory_mb=shuffle.component_memory_mb)
        (roots,) = shard_map.map(partial(_union_find_task, storage, work, n), [0], options)
        return roots, "union_find"
    folder = posixpath.join(work, "components")
    for rel in storage.list(posixpath.join(work, "edges")):
        table = storage.read_table(rel)
        write_canonical(
            storage,
            folder,
            posixpath.basename(rel).removesuffix(".parquet"),
            table["gid_a"].to_numpy(),
            table["gid_b"].to_numpy(),
            shuffle.partitions,
        )
    node, root = partitioned_components(storage, shard_map, folder, shuffle.partitions)
    return roots_from_stars(n, node, root), "large_star_small_star"


def _cluster(
    storage: Storage,
    fingerprints: dict[str, ShardManifest],
    config: DedupConfig,
    shard_map: ShardMap,
    shuffle: ShuffleConfig,
    folder: str,
    work: str,
) -> ShardManifest:
    shards, index, rank = global_index(storage, fingerprints, config)
    n = index.num_rows
    offsets = np.r_[0, np.cumsum([s.rows for s in shards])].astype(np.int64)
    for i in range(len(shards)):
        gids = pa.table({"gid": rank[offsets[i] : offsets[i + 1]]})
        storage.write_table(posixpath.join(work, "gids", f"s-{i:05d}.parquet"), gids)

    partitions = shuffle.partitions
    shuffle_bytes = sum(
        shard_map.map(
            partial(_map_shard, storage, work, config, partitions, shuffle.bands_per_read),
            list(enumerate(shards)),
        )
    )
    emitted = sum(
        shard_map.map(
            partial(_reduce_partition, storage, work, config, len(shards)), list(range(partitions))
        )
    )
    matches = join_agreements(storage, shard_map, shards, posixpath.join(work, "verify"), config)
    verified = matches.filter(
        pc.greater_equal(
            pc.divide(pc.cast(matches["matches"], pa.float64()), config.num_perm), config.threshold
        )
    ).select(["gid_a", "gid_b"])
    storage.write_table(posixpath.join(work, "edges", "verified.parquet"), verified.cast(EDGE_ROWS))

    roots_by_gid, method = _components(storage, shard_map, work, n, shuffle)
    roots = roots_by_gid[rank]  # any label of a component serves: kept = lowest rank
    removals, sizes = cluster_removals(index, rank, roots)
    near = removals["reason"] == NEAR
    removals["jaccard"] = np.ones(len(removals["doc"]), dtype=np.float32)
    removals["jaccard"][near] = _near_jaccard(
        storage,
        shard_map,
        shards,
        offsets,
        rank,
        removals["doc"][near],
        removals["kept"][near],
        config,
        posixpath.join(work, "near"),
    )

    shuffle = {
        "engine": shard_map.name,
        "partitions": partitions,
        "map_bytes": shuffle_bytes,
        "candidates_emitted": emitted,
        "components": method,
    }
    return removal_manifest(
        storage,
        folder,
        index,
        removals,
        sizes,
        config,
        matches.num_rows,
        verified.num_rows,
        {"shuffle": shuffle},
    )


def _near_jaccard(
    storage: Storage,
    shard_map: ShardMap,
    shards: list[ShardInfo],
    offsets: np.ndarray,
    rank: np.ndarray,
    doc: np.ndarray,
    kept: np.ndarray,
    config: DedupConfig,
    folder: str,
) -> np.ndarray:
    """Estimated Jaccard of each (removed, kept) row pair, through the signature join."""
    if len(doc) == 0:
        return np.zeros(0, np.float32)
    shard_of = np.searchsorted(offsets, np.r_[doc, kept], side="right") - 1
    row_of = np.r_[doc, kept] - offsets[shard_of]
    m = len(doc)
    pairs = pa.table(
        {
            "gid_a": rank[doc],
            "gid_b": rank[kept],
            "shard_a": shard_of[:m].astype(np.int32),
            "row_a": row_of[:m].astype(np.int32),
            "shard_b": shard_of[m:].astype(np.int32),
            "row_b": row_of[m:].astype(np.int32),
        },
        schema=PAIR_SCHEMA,
    )
    write_pairs(storage, folder, "driver", pairs, len(shards))
    matches = join_agreements(storage, shard_map, shards, folder, config)
    found = dict(
        zip(
            zip(matches["gid_a"].to_pylist(), matches["gid_b"].to_pylist(), strict=True),
            matches["matches"].to_pylist(),
            strict=True,
        )
    )
    agree = np.array(
        [found[(a, b)] for a, b in zip(rank[doc].tolist(), rank[kept].tolist(), strict=True)]
    )
    return agree / config.num_perm
