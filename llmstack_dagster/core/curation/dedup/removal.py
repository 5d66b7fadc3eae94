"""Stage 3 runner: apply the removal list to one domain's document shards."""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pyarrow.compute as pc

from llmstack_dagster.core.curation.dedup.clusters import EXACT
from llmstack_dagster.core.curation.dedup.config import DedupConfig
from llmstack_dagster.core.schema import DOCUMENT_SCHEMA, DROP_SCHEMA, make_drop
from llmstack_dagster.core.storage import (
    ShardManifest,
    ShardWriter,
    Storage,
    build_version,
    content_version,
    iter_shard_tables,
)

ASSET = "deduplicated_documents"
CODE_VERSION = "1"
REASONS = {EXACT: "exact_duplicate", "near_duplicate_of": "near_duplicate"}


def domain_removals(storage: Storage, clusters: ShardManifest, domain: str) -> pa.Table:
    """The rows of the removal list whose document belongs to ``domain``."""
    parts = [
        table.filter(pc.equal(table["domain"], domain))
        for _, table in iter_shard_tables(storage, clusters.shards)
    ]
    return pa.concat_tables(parts) if parts else pa.table({"id": pa.array([], pa.string())})


def apply_removals(
    storage: Storage,
    documents: ShardManifest,
    clusters: ShardManifest,
    domain: str,
    config: DedupConfig,
) -> ShardManifest:
    """Stream the domain's shards, keep what is not listed, record every removal as a drop.

    Memory: this domain's removal rows plus one document shard. The content version depends
    on this domain's removal rows only, so a change of the global list that does not touch the
    domain leaves its output as it is.
    """
    removals = domain_removals(storage, clusters, domain)
    version_id = content_version(
        ASSET,
        CODE_VERSION,
        {"max_shard_rows": config.max_shard_rows},
        [documents.content_version, removals_digest(removals)],
    )
    return build_version(
        storage, ASSET, domain, version_id,
        lambda v: _apply(storage, documents, removals, domain, config, v.folder),
    )  # fmt: skip


def removals_digest(removals: pa.Table) -> str:
    """A hash of a domain's removal rows, in id order."""
    rows = removals.sort_by("id").to_pylist() if removals.num_rows else []
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()


def _apply(
    storage: Storage,
    documents: ShardManifest,
    removals: pa.Table,
    domain: str,
    config: DedupConfig,
    folder: str,
) -> ShardManifest:
    details = {row["id"]: row for row in removals.to_pylist()}
    removed_ids = removals["id"]
    kept_writer = ShardWriter(storage, folder, DOCUMENT_SCHEMA, max_rows=config.max_shard_rows)
    drop_writer = ShardWriter(storage, folder, DROP_SCHEMA, prefix="drops")
    counts = {"in": 0, "kept": 0, "dropped": 0, "exact_duplicate": 0, "near_duplicate": 0}
    for _, table in iter_shard_tables(storage, documents.shards):
        listed = pc.is_in(table["id"], value_set=removed_ids)
        kept = table.filter(pc.invert(listed))
        kept_writer.write_table(kept)
        counts["in"] += table.num_rows
        counts["kept"] += kept.num_rows
        for doc in table.filter(listed).select(["id", "source", "text"]).to_pylist():
            row = details[doc["id"]]
            reason = REASONS[row["reason"]]
            counts[reason] += 1
            counts["dropped"] += 1
            drop_writer.write_row(
                make_drop(
                    stage=ASSET,
                    domain=domain,
                    source=doc["source"],
                    id=doc["id"],
                    reason=reason,
                    detail=(
                        f"{row['reason']} {row['kept_domain']}:{row['kept_id']} "
                        f"jaccard={row['estimated_jaccard']:.3f} cluster={row['cluster_id']}"
                    ),
                    sample=doc["text"],
                )
            )
    return ShardManifest(
        asset=ASSET,
        partition=domain,
        shards=kept_writer.close(),
        drops=drop_writer.close(),
        counts=counts,
        extra={
            "listed_for_domain": removals.num_rows,
            "listed_not_found": removals.num_rows - counts["dropped"],
        },
    )
