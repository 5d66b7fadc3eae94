"""Global dedup as three assets (identify, then remove), after Parmar et al. 2024, stage 1.

``document_fingerprints`` (per domain) -> ``duplicate_clusters`` (all domains at once, keep the
oldest copy) -> ``deduplicated_documents`` (per domain, the removal list applied).
"""

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    AllPartitionMapping,
    AssetCheckResult,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)

from llmstack_dagster.assets.common import (
    CURATION_GROUP,
    GLOBAL_ASSETS_POOL,
    RECURATE_ON_CHANGE,
    committed_version,
    domain_partitions,
    markdown_table,
    materialization,
    resume_key,
    shard_metadata,
)
from llmstack_dagster.core.curation.dedup.clusters import CODE_VERSION as CLUSTERS_CODE_VERSION
from llmstack_dagster.core.curation.dedup.clusters import find_duplicate_clusters
from llmstack_dagster.core.curation.dedup.config import DedupConfig
from llmstack_dagster.core.curation.dedup.exact import exact_hash128
from llmstack_dagster.core.curation.dedup.fingerprints import (
    CODE_VERSION as FINGERPRINTS_CODE_VERSION,
)
from llmstack_dagster.core.curation.dedup.fingerprints import compute_fingerprints
from llmstack_dagster.core.curation.dedup.removal import CODE_VERSION as REMOVAL_CODE_VERSION
from llmstack_dagster.core.curation.dedup.removal import apply_removals
from llmstack_dagster.core.curation.dedup.shuffle_dedup import find_duplicate_clusters_shuffled
from llmstack_dagster.core.storage import Storage, iter_shard_tables, read_manifest
from llmstack_dagster.profiles import profiled
from llmstack_dagster.resources.shard_map import ShardMapResource, shard_map_from_env
from llmstack_dagster.resources.storage import StorageResource


@profiled("dedup")
class DedupAssetConfig(Config):
    """Defaults: word 5-grams, 14 bands x 8 rows (threshold ~0.72), verify at Jaccard 0.8.
    NeMo Curator's alternative: shingle="char", ngram=24, num_bands=20, rows_per_band=13."""

    shingle: str = "word"
    ngram: int = 5
    num_bands: int = 14
    rows_per_band: int = 8
    threshold: float = 0.8
    seed: int = 42

    def core(self) -> DedupConfig:
        return DedupConfig.model_validate(self.model_dump())


@asset(
    code_version=FINGERPRINTS_CODE_VERSION,
    partitions_def=domain_partitions,
    group_name=CURATION_GROUP,
    automation_condition=RECURATE_ON_CHANGE,
    output_required=False,
    deps=["raw_documents"],
    description="Per-document exact (xxh3-128 of NFC, whitespace-collapsed text) and MinHash "
    "fingerprints, stored per shard with one column per LSH band.",
)
def document_fingerprints(
    context: AssetExecutionContext, config: DedupAssetConfig, storage: StorageResource
) -> Iterator[MaterializeResult]:
    store = storage.get()
    domain = context.partition_key
    previous = committed_version(store, "document_fingerprints", domain)
    raw = read_manifest(store, "raw_documents", domain)
    manifest = compute_fingerprints(
        store, raw, domain, config.core(), shard_map_from_env(), resume_key(context)
    )
    result = materialization(context, manifest, previous, lambda: {
        **shard_metadata(store, manifest),
        "signature_params": MetadataValue.json(manifest.extra["signature_params"]),
        "docs_per_s": MetadataValue.float(float(manifest.extra["docs_per_s"])),
        "mb_per_s": MetadataValue.float(float(manifest.extra["mb_per_s"])),
    })  # fmt: skip
    if result is not None:
        yield result


def _cluster_previews(store: Storage, sample: list[dict], chars: int = 100) -> list[dict]:
    """The sampled clusters with a short text preview of each kept and removed document."""
    wanted = {c["kept_id"] for c in sample} | {i for c in sample for i in c["removed_ids"][:2]}
    texts: dict[str, str] = {}
    for domain in domain_partitions.get_partition_keys():
        raw = read_manifest(store, "raw_documents", domain)
        for _, table in iter_shard_tables(store, raw.shards, columns=["id", "text"]):
            hit = table.filter(pc.is_in(table["id"], value_set=pc.cast(list(wanted), "string")))
            texts.update(zip(hit["id"].to_pylist(), hit["text"].to_pylist(), strict=True))
    rows = []
    for cluster in sample:
        removed = cluster["removed_ids"][:2]
        rows.append(
            {
                "cluster": cluster["cluster_id"],
                "size": cluster["size"],
                "kept": f"{cluster['kept_id']}: {texts.get(cluster['kept_id'], '')[:chars]}",
                "removed": " / ".join(f"{i}: {texts.get(i, '')[:chars]}" for i in removed),
            }
        )
    return rows


@asset(
    code_version=CLUSTERS_CODE_VERSION,
    group_name=CURATION_GROUP,
    automation_condition=RECURATE_ON_CHANGE,
    output_required=False,
    pool=GLOBAL_ASSETS_POOL,
    deps=[AssetDep("document_fingerprints", partition_mapping=AllPartitionMapping())],
    check_specs=[
        AssetCheckSpec(
            "no_exact_duplicate_survives",
            asset="duplicate_clusters",
            description="each exact-hash group keeps exactly one document",
        )
    ],
    description="Duplicate clusters across ALL domains: exact groups plus LSH candidates "
    "verified by estimated Jaccard, joined by union-find; the oldest document of each cluster "
    "(by created, ties by id) is kept, the rest listed for removal with their reason.",
)
def duplicate_clusters(
    context: AssetExecutionContext,
    config: DedupAssetConfig,
    storage: StorageResource,
    shard_map: ShardMapResource,
) -> Iterator[MaterializeResult | AssetCheckResult]:
    store = storage.get()
    previous = committed_version(store, "duplicate_clusters", None)
    fingerprints = {
        d: read_manifest(store, "document_fingerprints", d)
        for d in domain_partitions.get_partition_keys()
    }
    shuffle = shard_map.shuffle()
    if shuffle is None:
        manifest = find_duplicate_clusters(store, fingerprints, config.core())
    else:  # the same removal list, computed as a shuffle on the engine
        manifest = find_duplicate_clusters_shuffled(
            store, fingerprints, config.core(), shard_map.get(), shuffle
        )
    extra = manifest.extra
    context.log.info(f"dedup: {manifest.counts}")
    result = materialization(context, manifest, previous, lambda: {
        **shard_metadata(store, manifest),
        "duplicate_rate_per_domain": MetadataValue.md(
            markdown_table([{"domain": d, **v} for d, v in extra["per_domain"].items()])
        ),
        "cross_domain_duplicates": MetadataValue.json(extra["cross_domain_removed"]),
        "cluster_size_histogram": MetadataValue.json(extra["cluster_size_histogram"]),
        "largest_clusters": MetadataValue.md(
            markdown_table(_cluster_previews(store, extra["largest_clusters"]))
        ),
        "band_memory_bytes": MetadataValue.int(int(extra["band_memory_bytes"])),
    })  # fmt: skip
    if result is not None:
        yield result
    survivors = _surviving_exact_duplicates(store, fingerprints, manifest)
    yield AssetCheckResult(
        check_name="no_exact_duplicate_survives",
        passed=survivors == 0,
        metadata={"exact_groups_with_several_survivors": survivors},
    )


def _surviving_exact_duplicates(store: Storage, fingerprints: dict, clusters) -> int:
    """Exact-hash groups that still have more than one document after the removal list."""
    removed = pa.concat_arrays(
        [t["id"].combine_chunks() for _, t in iter_shard_tables(store, clusters.shards, ["id"])]
        or [pa.array([], pa.string())]
    )
    keys = []
    for manifest in fingerprints.values():
        for _, table in iter_shard_tables(
            store, manifest.shards, columns=["id", "hash_hi", "hash_lo"]
        ):
            alive = pc.invert(pc.is_in(table["id"], value_set=removed)).to_numpy(
                zero_copy_only=False
            )
            pairs = np.stack([table["hash_hi"].to_numpy(), table["hash_lo"].to_numpy()], 1)
            keys.append(pairs[alive])
    if not keys:
        return 0
    _, counts = np.unique(np.concatenate(keys), axis=0, return_counts=True)
    return int((counts > 1).sum())


@asset(
    code_version=REMOVAL_CODE_VERSION,
    partitions_def=domain_partitions,
    group_name=CURATION_GROUP,
    automation_condition=RECURATE_ON_CHANGE,
    output_required=False,
    deps=["raw_documents", "duplicate_clusters"],
    check_specs=[
        AssetCheckSpec(
            "counts_balance", asset="deduplicated_documents", description="in = kept + removed"
        ),
        AssetCheckSpec("unique_ids", asset="deduplicated_documents"),
        AssetCheckSpec(
            "no_exact_duplicate_within_domain",
            asset="deduplicated_documents",
            description="no two kept documents share an exact hash",
        ),
    ],
    description="The domain's documents with the global removal list applied.",
)
def deduplicated_documents(
    context: AssetExecutionContext, config: DedupAssetConfig, storage: StorageResource
) -> Iterator[MaterializeResult | AssetCheckResult]:
    store = storage.get()
    domain = context.partition_key
    previous = committed_version(store, "deduplicated_documents", domain)
    raw = read_manifest(store, "raw_documents", domain)
    clusters = read_manifest(store, "duplicate_clusters", None)
    manifest = apply_removals(store, raw, clusters, domain, config.core())
    counts = manifest.counts
    result = materialization(context, manifest, previous, lambda: {
        **shard_metadata(store, manifest),
        "duplicate_rate": MetadataValue.float(counts["dropped"] / max(counts["in"], 1)),
    })  # fmt: skip
    if result is not None:
        yield result
    yield AssetCheckResult(
        check_name="counts_balance",
        passed=counts["in"] == counts["kept"] + counts["dropped"],
        metadata=dict(counts),
    )
    ids, hashes = [], []
    for _, table in iter_shard_tables(store, manifest.shards, columns=["id", "text"]):
        ids.extend(table["id"].to_pylist())
        hashes.append(exact_hash128(table["text"]))
    yield AssetCheckResult(
        check_name="unique_ids", passed=len(ids) == len(set(ids)), metadata={"documents": len(ids)}
    )
    stacked = np.concatenate(hashes) if hashes else np.zeros((0, 2), np.uint64)
    distinct = len(np.unique(stacked.reshape(len(ids), -1), axis=0)) if ids else 0
    yield AssetCheckResult(
        check_name="no_exact_duplicate_within_domain",
        passed=distinct == len(ids),
        metadata={"documents": len(ids), "distinct_exact_hashes": distinct},
    )
