"""Stage 2 runner: global exact groups + LSH fuzzy clusters, keep-oldest, the removal list.

Memory: the global index (id, domain, created, exact hash, shingle count; about 60 bytes plus
the id per document) and, while one band is processed, that band's values and keys for the
whole corpus (4 * rows + 16 bytes per document), plus the candidate pairs. Nothing grows with
the number of bands, and no full signature matrix is ever loaded.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llmstack_dagster.core.curation.dedup.config import DedupConfig
from llmstack_dagster.core.curation.dedup.fingerprints import band_column
from llmstack_dagster.core.curation.dedup.lsh import band_keys, candidate_pairs, unique_pairs
from llmstack_dagster.core.curation.dedup.union_find import connected_components
from llmstack_dagster.core.storage import (
    OutputVersion,
    ShardInfo,
    ShardManifest,
    ShardWriter,
    Storage,
    build_version,
    content_version,
)

ASSET = "duplicate_clusters"
CODE_VERSION = "1"
EXACT = "exact_duplicate_of"
NEAR = "near_duplicate_of"
INDEX_COLUMNS = ["id", "domain", "created", "hash_hi", "hash_lo", "num_shingles"]

REMOVAL_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("kept_id", pa.string(), nullable=False),
        pa.field("kept_domain", pa.string(), nullable=False),
        pa.field("estimated_jaccard", pa.float32(), nullable=False),
        pa.field("cluster_id", pa.int64(), nullable=False),
    ]
)


def _ordered_shards(fingerprints: dict[str, ShardManifest], config: DedupConfig) -> list[ShardInfo]:
    expected = config.signature_params()
    shards = []
    for domain in sorted(fingerprints):
        params = fingerprints[domain].extra.get("signature_params")
        if params != expected:
            raise ValueError(
                f"fingerprints of domain {domain!r} were made with {params}, not {expected}; "
                "recompute them with the same dedup config"
            )
        shards.extend(fingerprints[domain].shards)
    return shards


def global_index(
    storage: Storage, fingerprints: dict[str, ShardManifest], config: DedupConfig
) -> tuple[list[ShardInfo], pa.Table, np.ndarray]:
    """The fingerprint shards in order, their index columns as one table, and each row's rank
    in (created, id) order: the global id, so a component's smallest is its oldest document."""
    shards = _ordered_shards(fingerprints, config)
    tables = [storage.read_table(s.path, columns=INDEX_COLUMNS) for s in shards]
    index = pa.concat_tables(tables) if tables else pa.table({c: [] for c in INDEX_COLUMNS})
    rank = np.empty(index.num_rows, dtype=np.int64)
    order = pc.sort_indices(index, [("created", "ascending"), ("id", "ascending")])
    rank[order.to_numpy()] = np.arange(index.num_rows)
    return shards, index, rank


def _read_band(storage: Storage, shards: list[ShardInfo], band: int, rows: int) -> np.ndarray:
    """One band of every document, [n, rows] uint32, reading only that column."""
    name = band_column(band)
    parts = [
        storage.read_table(s.path, columns=[name]).column(name).combine_chunks().flatten()
        for s in shards
    ]
    flat = np.concatenate([p.to_numpy() for p in parts]) if parts else np.zeros(0, np.uint32)
    return flat.reshape(-1, rows)


def _agreements(
    storage: Storage, shards: list[ShardInfo], pairs: np.ndarray, config: DedupConfig
) -> np.ndarray:
    """Signature-estimated Jaccard of each pair, accumulated band by band."""
    matches = np.zeros(len(pairs), dtype=np.int64)
    if len(pairs):
        for band in range(config.num_bands):
            values = _read_band(storage, shards, band, config.rows_per_band)
            matches += (values[pairs[:, 0]] == values[pairs[:, 1]]).sum(axis=1)
    return matches / config.num_perm


def exact_duplicate_edges(hi: np.ndarray, lo: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """(kept, removed) index pairs from each exact-hash group's lowest-rank member to the rest.

    Counting the documents per bucket of the hash's top bits (about 8 buckets a document,
    at most 2^22) finds, in one linear pass, every document that shares a bucket: the
    duplicates and a few others. Only those are ordered by (hi, lo, rank): 2.3x faster than
    one sort of all 100k hashes of the benchmark, for the same edges.
    """
    bits = min(len(hi).bit_length() + 3, 22)
    buckets = (hi >> np.uint64(64 - bits)).astype(np.int64)
    members = np.flatnonzero(np.bincount(buckets, minlength=1 << bits)[buckets] > 1)
    members = members[np.lexsort((rank[members], lo[members], hi[members]))]
    same = (hi[members][1:] == hi[members][:-1]) & (lo[members][1:] == lo[members][:-1])
    first = np.maximum.accumulate(np.where(np.r_[True, ~same], np.arange(len(members)), 0))
    dup = np.flatnonzero(np.r_[False, same])
    return np.stack([members[first[dup]], members[dup]], -1).astype(np.int64, copy=False)


def _lsh_candidates(
    storage: Storage,
    shards: list[ShardInfo],
    rank: np.ndarray,
    eligible: np.ndarray,
    config: DedupConfig,
) -> np.ndarray:
    """Distinct candidate pairs over all bands, one band in memory at a time."""
    found = []
    for band in range(config.num_bands):
        values = _read_band(storage, shards, band, config.rows_per_band)[eligible]
        local = candidate_pairs(
            band_keys(values, band), rank[eligible], config.bucket_all_pairs_max
        )
        found.append(unique_pairs(eligible[local]))
    return unique_pairs(np.concatenate(found)) if found else np.zeros((0, 2), np.int64)


def find_duplicate_clusters(
    storage: Storage, fingerprints: dict[str, ShardManifest], config: DedupConfig
) -> ShardManifest:
    """Cluster duplicates across all domains and write the removal list.

    Exact groups (equal 128-bit hash) and LSH candidates whose signature-estimated Jaccard is
    at least ``config.threshold`` are joined with union-find; in every cluster the oldest
    document by ``created`` (ties: smallest id) is kept and every other one is listed with
    reason ``exact_duplicate_of`` (same exact hash as the kept one) or ``near_duplicate_of``.
    """
    settings = {
        "signature": config.signature_params(),
        "threshold": config.threshold,
        "bucket_all_pairs_max": config.bucket_all_pairs_max,
    }
    inputs = [f"{d}:{m.content_version}" for d, m in sorted(fingerprints.items())]
    version_id = content_version(ASSET, CODE_VERSION, settings, inputs)

    def build(version: OutputVersion) -> ShardManifest:
        return _cluster(storage, fingerprints, config, version.folder)

    return build_version(storage, ASSET, None, version_id, build)


def _cluster(
    storage: Storage, fingerprints: dict[str, ShardManifest], config: DedupConfig, folder: str
) -> ShardManifest:
    shards, index, rank = global_index(storage, fingerprints, config)
    n = index.num_rows

    exact = exact_duplicate_edges(index["hash_hi"].to_numpy(), index["hash_lo"].to_numpy(), rank)
    eligible = np.flatnonzero(index["num_shingles"].to_numpy() > 0) if n else np.zeros(0, int)
    candidates = _lsh_candidates(storage, shards, rank, eligible, config)
    jaccard = _agreements(storage, shards, candidates, config)
    verified = candidates[jaccard >= config.threshold]
    edges = np.concatenate([exact, verified]) if n else np.zeros((0, 2), np.int64)
    roots = connected_components(n, edges[:, 0], edges[:, 1])

    removals, sizes = cluster_removals(index, rank, roots)
    near = removals["reason"] == NEAR
    removals["jaccard"] = np.ones(len(removals["doc"]), dtype=np.float32)
    near_pairs = np.stack([removals["doc"][near], removals["kept"][near]], -1)
    removals["jaccard"][near] = _agreements(storage, shards, near_pairs, config)

    return removal_manifest(
        storage, folder, index, removals, sizes, config, len(candidates), len(verified)
    )


def removal_manifest(
    storage: Storage,
    folder: str,
    index: pa.Table,
    removals: dict[str, np.ndarray],
    sizes: np.ndarray,
    config: DedupConfig,
    candidates: int,
    verified: int,
    extra: dict[str, Any] | None = None,
) -> ShardManifest:
    """Write the removal shards and describe them: counts, cluster statistics, the signature
    settings (``extra`` adds an engine's own figures). The local and the shuffle runs share it,
    so their outputs and manifests agree."""
    n = index.num_rows
    near = removals["reason"] == NEAR
    writer = ShardWriter(
        storage, folder, REMOVAL_SCHEMA, prefix="removals", max_rows=config.max_shard_rows
    )
    writer.write_table(_removal_table(index, removals))
    return ShardManifest(
        asset=ASSET,
        partition=None,
        shards=writer.close(),
        counts={
            "documents": n,
            "removed": len(removals["doc"]),
            "exact_removed": int((~near).sum()),
            "near_removed": int(near.sum()),
            "clusters": len(sizes),
            "candidate_pairs": candidates,
            "verified_pairs": verified,
        },
        extra={
            **_stats(index, removals, sizes, config),
            "signature_params": config.signature_params(),
            "threshold": config.threshold,
            "band_memory_bytes": n * (4 * config.rows_per_band + 16),
            **(extra or {}),
        },
    )


def cluster_removals(
    index: pa.Table, rank: np.ndarray, roots: np.ndarray
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per removed document: its row, the kept row, reason, cluster id; and cluster sizes."""
    order = np.lexsort((rank, roots))
    sorted_roots = roots[order]
    starts = np.flatnonzero(np.r_[True, sorted_roots[1:] != sorted_roots[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    multi = sizes > 1
    starts, sizes = starts[multi], sizes[multi]
    # clusters numbered by the age rank of their kept document
    cluster_order = np.argsort(rank[order[starts]], kind="stable")
    starts, sizes = starts[cluster_order], sizes[cluster_order]
    kept = np.repeat(order[starts], sizes - 1)
    cluster = np.repeat(np.arange(len(starts)), sizes - 1)
    member_pos = (
        np.concatenate([np.arange(s + 1, s + z) for s, z in zip(starts, sizes, strict=True)])
        if len(starts)
        else np.zeros(0, dtype=np.int64)
    )
    doc = order[member_pos].astype(np.int64)
    hi = index["hash_hi"].to_numpy()
    lo = index["hash_lo"].to_numpy()
    same = (hi[doc] == hi[kept]) & (lo[doc] == lo[kept])
    reason = np.where(same, EXACT, NEAR)
    return {"doc": doc, "kept": kept, "reason": reason, "cluster": cluster}, sizes


def _removal_table(index: pa.Table, removals: dict[str, np.ndarray]) -> pa.Table:
    take = pa.array(removals["doc"], pa.int64())
    kept = pa.array(removals["kept"], pa.int64())
    return pa.table(
        {
            "id": index["id"].take(take),
            "domain": index["domain"].take(take),
            "reason": pa.array(removals["reason"].tolist(), pa.string()),
            "kept_id": index["id"].take(kept),
            "kept_domain": index["domain"].take(kept),
            "estimated_jaccard": pa.array(removals["jaccard"], pa.float32()),
            "cluster_id": pa.array(removals["cluster"], pa.int64()),
        },
        schema=REMOVAL_SCHEMA,
    )


def _size_bin(size: int) -> str:
    """Histogram label of a cluster size: "2", "3", then powers of two "4-7", "8-15", ..."""
    if size < 4:
        return str(size)
    low = 1 << (int(size).bit_length() - 1)
    return f"{low}-{2 * low - 1}"


def _stats(
    index: pa.Table, removals: dict[str, np.ndarray], sizes: np.ndarray, config: DedupConfig
) -> dict[str, Any]:
    """Duplicate rate per domain, cross-domain counts, size histogram, largest clusters."""
    encoded = index["domain"].combine_chunks().dictionary_encode()
    names = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    codes = encoded.indices.to_numpy()
    ids = index["id"]
    totals = dict(
        zip(names.tolist(), np.bincount(codes, minlength=len(names)).tolist(), strict=True)
    )
    removed_dom = names[codes[removals["doc"]]]
    kept_dom = names[codes[removals["kept"]]]
    per_domain = {}
    for domain in sorted(totals):
        mine = removed_dom == domain
        per_domain[domain] = {
            "documents": totals[domain],
            "removed": int(mine.sum()),
            "exact": int((mine & (removals["reason"] == EXACT)).sum()),
            "near": int((mine & (removals["reason"] == NEAR)).sum()),
            "duplicate_rate": round(float(mine.sum()) / totals[domain], 6),
        }
    cross = Counter(
        f"{r}->{k}" for r, k in zip(removed_dom.tolist(), kept_dom.tolist(), strict=True) if r != k
    )
    histogram = Counter(_size_bin(s) for s in sizes.tolist())
    largest = np.argsort(-sizes, kind="stable")[: config.sample_clusters]
    sample = []
    for cluster in largest.tolist():
        members = np.flatnonzero(removals["cluster"] == cluster)
        kept_row = int(removals["kept"][members[0]])
        sample.append(
            {
                "cluster_id": cluster,
                "size": int(sizes[cluster]),
                "kept_id": ids[kept_row].as_py(),
                "kept_domain": names[codes[kept_row]],
                "removed_ids": [ids[int(r)].as_py() for r in removals["doc"][members[:5]]],
                "domains": dict(Counter(names[codes[removals["doc"][members]]].tolist())),
            }
        )
    return {
        "per_domain": per_domain,
        "cross_domain_removed": dict(sorted(cross.items())),
        "cluster_size_histogram": dict(
            sorted(histogram.items(), key=lambda kv: int(kv[0].split("-")[0]))
        ),
        "largest_clusters": sample,
        "largest_clusters_md": _clusters_markdown(sample),
    }


def _clusters_markdown(sample: list[dict[str, Any]]) -> str:
    lines = [
        "| cluster | size | kept (domain) | removed, first 5 | domains |",
        "|---|---|---|---|---|",
    ]
    for c in sample:
        lines.append(
            f"| {c['cluster_id']} | {c['size']} | `{c['kept_id']}` ({c['kept_domain']}) | "
            + ", ".join(f"`{i}`" for i in c["removed_ids"])
            + f" | {c['domains']} |"
        )
    return "\n".join(lines)
