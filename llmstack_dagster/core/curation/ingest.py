"""Ingestion: a domain's sources become bounded document shards plus a quarantine table.

Every record a source yields ends up either as a document or as a quarantine row with its
reason, so ``read = written + quarantined`` per source. Records outside a source's filter are
not part of that source and are counted separately as ``skipped_by_filter``.

The partition is written as a new version (see :mod:`llmstack_dagster.core.storage`): until
it is committed, readers see the previous one, complete. Duplicate ids are found after the
shards are written, with memory bounded by one hash bucket (:mod:`.duplicate_ids`); each
repeated occurrence is taken out of its shard and quarantined as ``duplicate_id``.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llmstack_dagster.core.curation.duplicate_ids import DuplicateRows, find_duplicate_ids
from llmstack_dagster.core.curation.readers import read_source
from llmstack_dagster.core.curation.records import STAGE, SourceIngest
from llmstack_dagster.core.curation.source_versions import source_data_version
from llmstack_dagster.core.curation.sources import DomainConfig
from llmstack_dagster.core.schema import DOCUMENT_SCHEMA, DROP_SCHEMA, make_drop
from llmstack_dagster.core.storage import (
    DEFAULT_MAX_SHARD_ROWS,
    OutputVersion,
    ShardInfo,
    ShardManifest,
    ShardWriter,
    Storage,
    build_version,
    content_version,
)

CODE_VERSION = "2"
SAMPLE_ROWS = 5
BALANCE_KEYS = ("read", "written", "quarantined", "skipped_by_filter")


def ingest_domain(
    storage: Storage,
    domain: str,
    config: DomainConfig,
    *,
    asset: str = STAGE,
    max_shard_rows: int = DEFAULT_MAX_SHARD_ROWS,
) -> ShardManifest:
    """Ingest every source of ``domain`` into a new committed version of the partition, or
    return the committed one when the sources' files and the settings are unchanged."""
    version_id = content_version(
        asset,
        CODE_VERSION,
        {"max_shard_rows": max_shard_rows},
        [source_data_version(source) for source in config.sources],
    )

    def build(version: OutputVersion) -> ShardManifest:
        return _ingest(storage, domain, config, version, max_shard_rows)

    return build_version(storage, asset, domain, version_id, build)


def _ingest(
    storage: Storage, domain: str, config: DomainConfig, version: OutputVersion, rows: int
) -> ShardManifest:
    docs = ShardWriter(storage, version.path("shards"), DOCUMENT_SCHEMA, max_rows=rows)
    quarantine = ShardWriter(storage, version.path("quarantine"), DROP_SCHEMA, max_rows=rows)
    per_source: dict[str, Counter[str]] = {}
    for source in config.sources:
        state = SourceIngest(source, domain)
        for raw in read_source(source):
            if not state.in_filter(raw):
                state.counts["skipped_by_filter"] += 1
                continue
            if source.max_docs is not None and state.counts["read"] >= source.max_docs:
                break
            doc, drop = state.convert(raw)
            if drop is not None:
                quarantine.write_row(drop)
            else:
                docs.write_row(doc)
        per_source[source.name] = state.counts
    shards = docs.close()
    duplicates = find_duplicate_ids(storage, shards)
    shards = _remove_duplicates(storage, shards, duplicates, quarantine, per_source, domain)
    drops = quarantine.close()
    return _manifest(storage, version.asset, domain, shards, drops, per_source)


def _remove_duplicates(
    storage: Storage,
    shards: list[ShardInfo],
    duplicates: DuplicateRows,
    quarantine: ShardWriter,
    per_source: dict[str, Counter[str]],
    domain: str,
) -> list[ShardInfo]:
    """Rewrite the shards holding repeated ids without them; quarantine each repeat."""
    out = list(shards)
    for index in np.unique(duplicates.shard):
        shard = shards[int(index)]
        table = storage.read_table(shard.path)
        rows = duplicates.rows_of(int(index))
        repeats = table.take(pa.array(rows)).select(["id", "source", "text", "metadata"])
        for doc in repeats.to_pylist():
            provenance = json.loads(doc["metadata"]).get("provenance", {})
            counts = per_source[doc["source"]]
            counts["written"] -= 1
            counts["quarantined"] += 1
            counts["quarantined:duplicate_id"] += 1
            quarantine.write_row(
                make_drop(
                    stage=STAGE,
                    domain=domain,
                    source=doc["source"],
                    id=doc["id"],
                    locator=f"{provenance.get('uri')}#{provenance.get('locator')}",
                    reason="duplicate_id",
                    detail=f"id {doc['id']!r} seen earlier in this source",
                    sample=doc["text"],
                )
            )
        keep = np.ones(table.num_rows, dtype=bool)
        keep[rows] = False
        kept = table.filter(pa.array(keep))
        size = storage.write_table(shard.path, kept)
        out[int(index)] = ShardInfo(path=shard.path, rows=kept.num_rows, bytes=size)
    return out


def _manifest(
    storage: Storage,
    asset: str,
    domain: str,
    shards: list[ShardInfo],
    drops: list[ShardInfo],
    per_source: dict[str, Counter[str]],
) -> ShardManifest:
    created_min = created_max = None
    for shard in shards:
        bounds = pc.min_max(storage.read_table(shard.path, columns=["created"])["created"])
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        if low is not None:
            created_min = min(created_min or low, low)
            created_max = max(created_max or high, high)
    samples: list[dict[str, Any]] = []
    if shards:
        head = storage.read_table(shards[0].path, columns=["id", "source", "created", "text"])
        for doc in head.slice(0, SAMPLE_ROWS).to_pylist():
            doc.update(created=doc["created"].isoformat(), text=doc["text"][:160])
            samples.append(doc)
    reasons: Counter[str] = Counter()
    for counts in per_source.values():
        for key, value in counts.items():
            if key.startswith("quarantined:"):
                reasons[key.split(":", 1)[1]] += value
    return ShardManifest(
        asset=asset,
        partition=domain,
        shards=shards,
        drops=drops,
        counts={
            "read": sum(c["read"] for c in per_source.values()),
            "written": sum(s.rows for s in shards),
            "quarantined": sum(s.rows for s in drops),
        },
        extra={
            "per_source": {
                name: {k: c[k] for k in sorted({*BALANCE_KEYS, *c})}
                for name, c in per_source.items()
            },
            "quarantine_reasons": dict(sorted(reasons.items())),
            "created_min": created_min.isoformat() if created_min else None,
            "created_max": created_max.isoformat() if created_max else None,
            "samples": samples,
        },
    )
