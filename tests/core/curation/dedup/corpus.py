"""Helpers: write document shards and run the three dedup runners over them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from llmstack_dagster.core.curation.dedup import (
    DedupConfig,
    apply_removals,
    compute_fingerprints,
    find_duplicate_clusters,
)
from llmstack_dagster.core.schema import documents_table, make_document
from llmstack_dagster.core.storage import ShardInfo, ShardManifest, Storage

EPOCH = datetime(2020, 1, 1, tzinfo=UTC)


def write_domain(
    storage: Storage, domain: str, docs: list[tuple[str, str, int]], shard_rows: int = 50
) -> ShardManifest:
    """Write (id, text, age-in-days) documents of one domain as raw shards."""
    rows = [
        make_document(
            id=i, text=t, domain=domain, source=f"{domain}-src", created=EPOCH + timedelta(days=d)
        )
        for i, t, d in docs
    ]
    shards = []
    for k in range(0, len(rows), shard_rows):
        rel = f"raw/{domain}/part-{k // shard_rows:05d}.parquet"
        table = documents_table(rows[k : k + shard_rows])
        shards.append(
            ShardInfo(path=rel, rows=table.num_rows, bytes=storage.write_table(rel, table))
        )
    return ShardManifest(asset="raw", partition=domain, shards=shards)


def run_all(
    storage: Storage, documents: dict[str, ShardManifest], config: DedupConfig
) -> tuple[ShardManifest, dict[str, ShardManifest]]:
    """Fingerprints per domain, clusters, then removals per domain."""
    prints = {d: compute_fingerprints(storage, m, d, config) for d, m in documents.items()}
    clusters = find_duplicate_clusters(storage, prints, config)
    deduped = {d: apply_removals(storage, m, clusters, d, config) for d, m in documents.items()}
    return clusters, deduped
