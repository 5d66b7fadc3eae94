"""Ingestion: a domain's sources become bounded document shards plus a quarantine table.

Every record a source yields ends up either as a document or as a quarantine row with its
reason, so ``read = written + quarantined`` per source. Records outside a source's filter are
not part of that source and are counted separately as ``skipped_by_filter``.

Each source file is one task on a :class:`~llmstack_dagster.core.scale.shard_map.ShardMap`
(:func:`ingest_file`): it reads, converts and validates the file's records and writes its
documents and quarantine rows into the version's ``.work/`` folder. The driver then writes
them into the partition's shards in file order, so the output is the one sequential reading
gives, whatever the engine. A source's ``max_docs`` is counted in file order: files go in
windows of the engine's width, each task reading at most what the source may still read at
the window's start; a task that read more than was left after the files before it is run
again with the exact remainder (:func:`_ingest_source`), and reading stops once the cap is
met.

The partition is written as a new version (see :mod:`llmstack_dagster.core.storage`): until
it is committed, readers see the previous one, complete. Duplicate ids are found after the
shards are written, with memory bounded by one hash bucket (:mod:`.duplicate_ids`); each
repeated occurrence is taken out of its shard and quarantined as ``duplicate_id``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llmstack_dagster.core.curation.duplicate_ids import DuplicateRows, find_duplicate_ids
from llmstack_dagster.core.curation.readers import read_source_file, source_files, unreadable_source
from llmstack_dagster.core.curation.records import STAGE, SourceIngest
from llmstack_dagster.core.curation.source_versions import source_data_version
from llmstack_dagster.core.curation.sources import DomainConfig, SourceBase
from llmstack_dagster.core.scale.resumable import map_resumable
from llmstack_dagster.core.scale.shard_map import ShardMap, local_or
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


@dataclass(frozen=True)
class FileTask:
    """One source file to ingest (a small description: no records)."""

    source: SourceBase
    domain: str
    file: str
    name: str  # unique in the version: source, file and cap
    cap: int | None  # records the source may still read; None: no cap
    folder: str
    max_rows: int


@dataclass(frozen=True)
class FileResult:
    """What one file gave: its counts, its written parts, and how reading ended."""

    counts: Counter[str]
    docs: list[ShardInfo]
    drops: list[ShardInfo]
    failure: str | None  # why the file could not be opened at all
    stopped: bool  # the source's cap was met inside this file: the source is done


def ingest_domain(
    storage: Storage,
    domain: str,
    config: DomainConfig,
    *,
    asset: str = STAGE,
    max_shard_rows: int = DEFAULT_MAX_SHARD_ROWS,
    shard_map: ShardMap | None = None,
    resume_key: str | None = None,
) -> ShardManifest:
    """Ingest every source of ``domain`` into a new committed version of the partition, or
    return the committed one when the sources' files and the settings are unchanged.

    Each file is one task on ``shard_map`` (inline on this machine by default); a retry with
    the same ``resume_key`` reads only the files not done yet (see
    :func:`~llmstack_dagster.core.storage.write_version`).
    """
    engine = local_or(shard_map)
    engine.require_shared_root(storage.root)
    version_id = content_version(
        asset,
        CODE_VERSION,
        {"max_shard_rows": max_shard_rows},
        [source_data_version(source) for source in config.sources],
    )

    def build(version: OutputVersion) -> ShardManifest:
        return _ingest(storage, domain, config, version, max_shard_rows, engine)

    return build_version(storage, asset, domain, version_id, build, resume_key)


def ingest_file(storage: Storage, task: FileTask) -> FileResult:
    """One engine task: read one file until its end or the source's cap, converting each
    record into a document or a quarantine row, as the sequential reading of the source does."""
    state = SourceIngest(task.source, task.domain)
    prefix = f"{task.name}-"
    docs = ShardWriter(storage, task.folder, DOCUMENT_SCHEMA, prefix + "docs", task.max_rows)
    drops = ShardWriter(storage, task.folder, DROP_SCHEMA, prefix + "drops", task.max_rows)
    records = read_source_file(task.source, task.file)
    stopped = False
    for raw in records:
        if not state.in_filter(raw):
            state.counts["skipped_by_filter"] += 1
            continue
        if task.cap is not None and state.counts["read"] >= task.cap:
            stopped = True
            break
        doc, drop = state.convert(raw)
        if drop is not None:
            drops.write_row(drop)
        else:
            docs.write_row(doc)
    return FileResult(state.counts, docs.close(), drops.close(), records.failure, stopped)


def _ingest_source(
    storage: Storage,
    engine: ShardMap,
    version: OutputVersion,
    domain: str,
    index: int,
    source: SourceBase,
    max_rows: int,
) -> list[FileResult]:
    """The results of the source's files in order, up to the one where its cap is met.

    Without a cap every file is one task at once. With one, files go in windows of the
    engine's width, each told the cap left at the window's start; a result that read more
    than was left after the files before it is dropped, with the rest of its window, and its
    file starts the next window with the exact remainder (at most once a source: nothing is
    left after it).
    """
    files = source_files(source)
    left = source.max_docs
    done: list[FileResult] = []
    while len(done) < len(files):
        start = len(done)
        end = len(files) if left is None else start + engine.width()
        tasks = [
            FileTask(source, domain, file, f"s{index:03d}-f{i:06d}-c{left}",
                     left, version.work("files"), max_rows)
            for i, file in enumerate(files[start:end], start)
        ]  # fmt: skip
        results = map_resumable(
            engine, storage, version.work("ingest"), partial(ingest_file, storage), tasks,
            keys=[task.name for task in tasks],
        )  # fmt: skip
        for result in results:
            if left is not None and result.counts["read"] > left:
                break
            done.append(result)
            if left is not None:
                left -= result.counts["read"]
            if result.stopped:
                return done
    failures = [r.failure for r in done if r.failure is not None]
    if failures and len(failures) == len(files):
        raise unreadable_source(source, failures)
    return done


def _ingest(
    storage: Storage,
    domain: str,
    config: DomainConfig,
    version: OutputVersion,
    rows: int,
    engine: ShardMap,
) -> ShardManifest:
    docs = ShardWriter(storage, version.path("shards"), DOCUMENT_SCHEMA, max_rows=rows)
    quarantine = ShardWriter(storage, version.path("quarantine"), DROP_SCHEMA, max_rows=rows)
    per_source: dict[str, Counter[str]] = {}
    for index, source in enumerate(config.sources):
        counts = SourceIngest(source, domain).counts
        for result in _ingest_source(storage, engine, version, domain, index, source, rows):
            counts.update(result.counts)
            for part in result.docs:
                docs.write_rows(storage.read_table(part.path))
            for part in result.drops:
                quarantine.write_rows(storage.read_table(part.path))
        per_source[source.name] = counts
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
