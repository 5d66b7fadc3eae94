"""Lineage of one document: each stage's decision, the mixture copies and the checkpoints.

:func:`trace_document` follows a document id (``<source>/<native id>``) through the committed
version of every stage, in pipeline order, and stops where the document left the pipeline:

``raw_documents`` -> ``document_fingerprints`` -> ``duplicate_clusters`` (the removal list) ->
``deduplicated_documents`` -> ``quality_scored`` -> ``dsir_selected`` -> ``sampled_mixture``
-> ``tokenized_shards`` -> the checkpoints under ``pretrained_checkpoint/`` whose
``data_version`` is the token shards' content version.

Each shard is read on its own, the ``id`` column first; the other columns of a shard are read
only when it holds the document, so memory stays bounded by one shard's columns.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field

from llmstack_dagster.core.curation.selection.dsir import WEIGHT_COLUMN
from llmstack_dagster.core.curation.selection.mixture import BUCKET_COLUMN, EPOCH_COLUMN
from llmstack_dagster.core.storage import (
    MANIFEST_NAME,
    ShardInfo,
    ShardManifest,
    Storage,
    partition_dir,
    read_manifest,
)
from llmstack_dagster.core.training.token_shards import TokenShardIndex, manifest_hash

Decision = Literal["kept", "dropped", "absent"]
Split = Literal["train", "val", "unknown"]
Match = Callable[[pa.ChunkedArray], pa.ChunkedArray]

RAW = "raw_documents"
FINGERPRINTS = "document_fingerprints"
CLUSTERS = "duplicate_clusters"
DEDUP = "deduplicated_documents"
QUALITY = "quality_scored"
DSIR = "dsir_selected"
MIXTURE = "sampled_mixture"
TOKENS = "tokenized_shards"
# the checkpoint layout of core/training/checkpoint.py (not imported: it loads torch)
CHECKPOINT_ASSET = "pretrained_checkpoint"
RUNS = "runs"  # one folder per run identity (core/training/runs.py)
CHECKPOINTS = "checkpoints"
COMPLETE = "COMPLETE"
STEP_DIR = re.compile(r"^step_\d{8}$")
EPOCH_SUFFIX = re.compile(r"#epoch\d+$")
DROP_COLUMNS = ["id", "reason", "detail"]


class StageDecision(BaseModel):
    """What one stage's committed version did with the document."""

    stage: str
    partition: str | None = None
    version: str | None = None
    decision: Decision
    reason: str | None = None
    detail: str | None = None


class MixtureCopy(BaseModel):
    """One row of the sampled mixture made from the document (one per epoch)."""

    id: str
    epoch: int
    bucket: str
    split: Split = "unknown"


class CheckpointRef(BaseModel):
    """A complete checkpoint trained on the token shards that hold the document."""

    path: str
    step: int
    tokens_seen: int
    data_version: str | None = None
    mixture_hash: str | None = None


class DocumentTrace(BaseModel):
    """The lineage of one document, stage by stage, up to the checkpoints."""

    doc_id: str
    domain: str | None = None
    stages: list[StageDecision] = Field(default_factory=list)
    duplicate_of: str | None = None
    mixture_copies: list[MixtureCopy] = Field(default_factory=list)
    data_version: str | None = None
    split_note: str | None = None
    checkpoints: list[CheckpointRef] = Field(default_factory=list)
    other_checkpoints: int = 0

    @property
    def found(self) -> bool:
        """Whether any stage holds the document (kept or dropped)."""
        return any(s.decision != "absent" for s in self.stages)

    @property
    def final(self) -> StageDecision | None:
        """The last stage traced: where the document was dropped, or the furthest it got."""
        return self.stages[-1] if self.stages else None


def _matching_rows(
    storage: Storage, shards: list[ShardInfo], match: Match, columns: list[str], first: bool
) -> list[dict[str, Any]]:
    """Rows whose ``id`` matches, reading one shard at a time and only its ``id`` first."""
    rows: list[dict[str, Any]] = []
    for shard in shards:
        mask = match(storage.read_table(shard.path, columns=["id"])["id"])
        if not pc.any(mask).as_py():
            continue
        table = storage.read_table(shard.path, columns=columns)
        rows.extend(table.filter(mask).to_pylist())
        if first:
            break
    return rows


def _equals(doc_id: str) -> Match:
    return lambda ids: pc.fill_null(pc.equal(ids, doc_id), False)


def _copies_of(doc_id: str) -> Match:
    """The document itself or its repeats ``<id>#epoch<k>`` in the mixture."""
    return lambda ids: pc.or_(pc.equal(ids, doc_id), pc.starts_with(ids, f"{doc_id}#epoch"))


def _manifest(storage: Storage, asset: str, partition: str | None) -> ShardManifest | None:
    rel = posixpath.join(partition_dir(asset, partition), MANIFEST_NAME)
    return read_manifest(storage, asset, partition) if storage.exists(rel) else None


def _record(
    manifest: ShardManifest | None,
    asset: str,
    partition: str | None,
    decision: Decision,
    reason: str | None = None,
    detail: str | None = None,
) -> StageDecision:
    return StageDecision(
        stage=asset,
        partition=partition,
        version=manifest.version if manifest else None,
        decision=decision,
        reason=reason,
        detail=detail,
    )


def _not_materialized(asset: str, partition: str | None) -> StageDecision:
    return _record(None, asset, partition, "absent", "not materialized")


def _shard_stage(
    storage: Storage,
    asset: str,
    partition: str | None,
    doc_id: str,
    kept_columns: list[str] | None = None,
) -> tuple[StageDecision, dict[str, Any] | None]:
    """Kept (in the shards), dropped (a drop row) or absent; with the kept row's columns."""
    manifest = _manifest(storage, asset, partition)
    if manifest is None:
        return _not_materialized(asset, partition), None
    kept = _matching_rows(storage, manifest.shards, _equals(doc_id), kept_columns or ["id"], True)
    if kept:
        return _record(manifest, asset, partition, "kept"), kept[0]
    drops = _matching_rows(storage, manifest.drops, _equals(doc_id), DROP_COLUMNS, True)
    if drops:
        drop = drops[0]
        return _record(manifest, asset, partition, "dropped", drop["reason"], drop["detail"]), None
    return _record(manifest, asset, partition, "absent"), None


def _raw_stage(storage: Storage, domain: str, doc_id: str) -> StageDecision:
    """Ingestion: kept, or quarantined with its reason; notes quarantined repeats of the id."""
    decision, _ = _shard_stage(storage, RAW, domain, doc_id)
    if decision.decision != "kept":
        return decision
    manifest = read_manifest(storage, RAW, domain)
    repeats = _matching_rows(storage, manifest.drops, _equals(doc_id), DROP_COLUMNS, False)
    if repeats:
        reasons = ", ".join(sorted({r["reason"] for r in repeats}))
        decision.detail = f"{len(repeats)} later record(s) with this id quarantined: {reasons}"
    return decision


def _clusters_stage(storage: Storage, doc_id: str) -> tuple[StageDecision, str | None]:
    """The removal list: listed (dropped, with the kept copy) or not; returns the kept id."""
    manifest = _manifest(storage, CLUSTERS, None)
    if manifest is None:
        return _not_materialized(CLUSTERS, None), None
    columns = ["id", "reason", "kept_id", "kept_domain", "estimated_jaccard", "cluster_id"]
    listed = _matching_rows(storage, manifest.shards, _equals(doc_id), columns, True)
    if listed:
        row = listed[0]
        detail = (
            f"kept {row['kept_domain']}:{row['kept_id']} "
            f"jaccard={row['estimated_jaccard']:.3f} cluster={row['cluster_id']}"
        )
        return _record(manifest, CLUSTERS, None, "dropped", row["reason"], detail), row["kept_id"]
    removed = _removed_copies(storage, manifest, doc_id)
    shown = ", ".join(removed[:5]) + (f" and {len(removed) - 5} more" if len(removed) > 5 else "")
    detail = f"oldest copy, kept; removed: {shown}" if removed else "not a duplicate"
    return _record(manifest, CLUSTERS, None, "kept", detail=detail), None


def _removed_copies(storage: Storage, manifest: ShardManifest, doc_id: str) -> list[str]:
    """Ids of the removed documents whose kept copy is ``doc_id``."""
    removed: list[str] = []
    for shard in manifest.shards:
        table = storage.read_table(shard.path, columns=["id", "kept_id"])
        removed += table.filter(pc.equal(table["kept_id"], doc_id))["id"].to_pylist()
    return removed


def _quality_stage(storage: Storage, domain: str, doc_id: str) -> StageDecision:
    """Kept or dropped by the preset; the detail adds the document's perplexity and bucket."""
    decision, _ = _shard_stage(storage, QUALITY, domain, doc_id)
    if decision.version is None:
        return decision
    manifest = read_manifest(storage, QUALITY, domain)
    scored = [ShardInfo.model_validate(s) for s in manifest.extra.get("scored_shards", [])]
    columns = ["id", "perplexity", "ccnet_bucket", "reasons"]
    rows = _matching_rows(storage, scored, _equals(doc_id), columns, True)
    if rows:
        row = rows[0]
        notes = [f"perplexity={_number(row['perplexity'])} bucket={row['ccnet_bucket']}"]
        if row["reasons"]:
            notes.insert(0, "failed " + ", ".join(row["reasons"]))
        decision.detail = "; ".join(notes)
    return decision


def _number(value: float | None) -> str:
    return "none" if value is None else f"{value:.1f}"


def _dsir_stage(storage: Storage, domain: str, doc_id: str) -> StageDecision:
    """Selected (with its log importance weight) or dropped."""
    decision, row = _shard_stage(storage, DSIR, domain, doc_id, ["id", WEIGHT_COLUMN])
    if row is not None and row.get(WEIGHT_COLUMN) is not None:
        decision.detail = f"{WEIGHT_COLUMN}={row[WEIGHT_COLUMN]:.4f}"
    return decision


def _mixture_stage(
    storage: Storage, doc_id: str
) -> tuple[StageDecision, list[MixtureCopy], ShardManifest | None]:
    """The mixture rows made from the document (one per epoch), or its drop row."""
    manifest = _manifest(storage, MIXTURE, None)
    if manifest is None:
        return _not_materialized(MIXTURE, None), [], None
    columns = ["id", BUCKET_COLUMN, EPOCH_COLUMN]
    rows = _matching_rows(storage, manifest.shards, _copies_of(doc_id), columns, False)
    copies = [
        MixtureCopy(id=r["id"], epoch=r[EPOCH_COLUMN] or 1, bucket=r[BUCKET_COLUMN]) for r in rows
    ]
    copies.sort(key=lambda c: c.epoch)
    if copies:
        detail = f"{len(copies)} cop{'y' if len(copies) == 1 else 'ies'} in {copies[0].bucket}"
        return _record(manifest, MIXTURE, None, "kept", detail=detail), copies, manifest
    drops = _matching_rows(storage, manifest.drops, _equals(doc_id), DROP_COLUMNS, True)
    if drops:
        drop = drops[0]
        decision = _record(manifest, MIXTURE, None, "dropped", drop["reason"], drop["detail"])
        return decision, [], manifest
    return _record(manifest, MIXTURE, None, "absent"), [], manifest


def _token_index(storage: Storage, manifest: ShardManifest) -> dict[str, Any] | None:
    rel = manifest.extra.get("index")
    return storage.read_json(rel) if rel and storage.exists(rel) else None


def _token_stage(
    storage: Storage, mixture: ShardManifest, domain: str, copies: list[MixtureCopy]
) -> tuple[StageDecision, str | None, str | None]:
    """Whether the token shards were built from this mixture (with their data version and a
    note when the split is unknown); sets each copy's split."""
    manifest = _manifest(storage, TOKENS, None)
    if manifest is None:
        return _not_materialized(TOKENS, None), None, None
    raw_index = _token_index(storage, manifest)
    index = TokenShardIndex.model_validate(raw_index) if raw_index else None
    built_from = index.mixture_hash if index else manifest.extra.get("mixture_hash")
    if built_from != manifest_hash(mixture):
        detail = f"built from another mixture (mixture_hash {str(built_from)[:12]})"
        return _record(manifest, TOKENS, None, "absent", "stale", detail), None, None
    data_version = (index.data_version if index else None) or manifest.content_version
    val_ids = manifest.extra.get("val_ids")
    note = None
    if val_ids and storage.exists(val_ids):
        _assign_splits(storage, val_ids, copies)
    else:
        note = "train or validation: unknown (these token shards list no validation ids)"
    detail = f"data_version={data_version}"
    return _record(manifest, TOKENS, None, "kept", detail=detail), data_version, note


def _assign_splits(storage: Storage, val_ids: str, copies: list[MixtureCopy]) -> None:
    """Each copy is in validation if the token shards list its id there, else in training."""
    held_out = storage.read_table(val_ids, columns=["id"])["id"]
    wanted = pa.array([c.id for c in copies], pa.string())
    in_val = pc.is_in(wanted, value_set=held_out).to_pylist()
    for copy, is_val in zip(copies, in_val, strict=True):
        copy.split = "val" if is_val else "train"


def _checkpoints(storage: Storage, data_version: str | None) -> tuple[list[CheckpointRef], int]:
    """Complete checkpoints trained on ``data_version``, and how many others there are."""
    runs = posixpath.join(CHECKPOINT_ASSET, RUNS)
    folders = [
        posixpath.join(runs, run, CHECKPOINTS, name)
        for run in storage.entries(runs)
        for name in storage.entries(posixpath.join(runs, run, CHECKPOINTS))
    ]
    matching: list[CheckpointRef] = []
    others = 0
    for folder in folders:
        meta = _complete_meta(storage, folder)
        if meta is None:
            continue
        if data_version is None or meta.get("data_version") != data_version:
            others += 1
            continue
        matching.append(
            CheckpointRef(
                path=folder,
                step=meta["step"],
                tokens_seen=meta.get("tokens_seen", 0),
                data_version=meta.get("data_version"),
                mixture_hash=meta.get("mixture_hash"),
            )
        )
    return matching, others


def _complete_meta(storage: Storage, folder: str) -> dict[str, Any] | None:
    """``meta.json`` of a complete checkpoint folder (``step_XXXXXXXX`` with COMPLETE)."""
    meta = posixpath.join(folder, "meta.json")
    name = posixpath.basename(folder)
    complete = storage.exists(posixpath.join(folder, COMPLETE)) and storage.exists(meta)
    return storage.read_json(meta) if STEP_DIR.match(name) and complete else None


def raw_domains(storage: Storage) -> list[str]:
    """The domains with a committed ``raw_documents`` partition."""
    return [
        name
        for name in storage.entries(RAW)
        if storage.exists(posixpath.join(RAW, name, MANIFEST_NAME))
    ]


def candidate_domains(storage: Storage, doc_id: str) -> list[str]:
    """Domains whose sources include the id's ``<source>/`` prefix; else every domain."""
    domains = raw_domains(storage)
    source = doc_id.split("/", 1)[0]
    hits = [
        d for d in domains if source in read_manifest(storage, RAW, d).extra.get("per_source", {})
    ]
    return hits or domains


def trace_document(storage: Storage, doc_id: str, domain: str | None = None) -> DocumentTrace:
    """Each stage's decision on ``doc_id``, its mixture copies and its checkpoints.

    A mixture copy id (``<id>#epoch<k>``) is traced as its original. Without ``domain`` the
    domains of the id's source are searched (every domain if no source matches).
    """
    doc_id = EPOCH_SUFFIX.sub("", doc_id)
    domains = [domain] if domain else candidate_domains(storage, doc_id)
    misses = []
    for name in domains:
        raw = _raw_stage(storage, name, doc_id)
        if raw.decision != "absent":
            return _trace_domain(storage, doc_id, name, raw)
        misses.append(raw)
    return DocumentTrace(doc_id=doc_id, stages=misses)


def _trace_domain(storage: Storage, doc_id: str, domain: str, raw: StageDecision) -> DocumentTrace:
    """Follow the document from ingestion until a stage drops it (or it reaches training)."""
    trace = DocumentTrace(doc_id=doc_id, domain=domain, stages=[raw])
    if raw.decision != "kept":
        return trace
    fingerprints, _ = _shard_stage(storage, FINGERPRINTS, domain, doc_id)
    clusters, trace.duplicate_of = _clusters_stage(storage, doc_id)
    trace.stages += [fingerprints, clusters]
    if fingerprints.decision != "kept" or clusters.version is None:
        return trace
    for stage in (
        lambda: _shard_stage(storage, DEDUP, domain, doc_id)[0],
        lambda: _quality_stage(storage, domain, doc_id),
        lambda: _dsir_stage(storage, domain, doc_id),
    ):
        trace.stages.append(stage())
        if trace.stages[-1].decision != "kept":
            return trace
    mixture, trace.mixture_copies, mixture_manifest = _mixture_stage(storage, doc_id)
    trace.stages.append(mixture)
    if mixture_manifest is None or not trace.mixture_copies:
        return trace
    tokens, trace.data_version, trace.split_note = _token_stage(
        storage, mixture_manifest, domain, trace.mixture_copies
    )
    trace.stages.append(tokens)
    if trace.data_version is not None:
        trace.checkpoints, trace.other_checkpoints = _checkpoints(storage, trace.data_version)
    return trace


def _summary(trace: DocumentTrace) -> str:
    final = trace.final
    if not trace.found or final is None:
        return "not found in any stage"
    if final.decision == "dropped":
        why = f": {final.reason}" if final.reason else ""
        dup = f" (duplicate of {trace.duplicate_of})" if trace.duplicate_of else ""
        return f"dropped at {final.stage}{why}{dup}"
    if final.decision == "absent":
        why = f" ({final.reason})" if final.reason else ""
        return f"kept through {trace.stages[-2].stage}; not in {final.stage}{why}"
    if not trace.checkpoints:
        return f"kept through {final.stage}; in no checkpoint"
    return f"kept through {final.stage}; in {len(trace.checkpoints)} checkpoint(s)"


def _stage_line(stage: StageDecision) -> str:
    said = ": ".join(p for p in (stage.reason, stage.detail) if p)
    version = stage.version or "-"
    line = f"  {stage.stage:<23} {stage.partition or '-':<9} {stage.decision:<8} {version}  {said}"
    return line.rstrip()


def format_trace(trace: DocumentTrace) -> str:
    """The trace as terminal text: a summary, one line per stage, copies and checkpoints."""
    where = f" (domain {trace.domain})" if trace.domain else ""
    lines = [f"{trace.doc_id}{where}: {_summary(trace)}"]
    lines += [_stage_line(stage) for stage in trace.stages]
    if trace.mixture_copies:
        lines.append("mixture copies:")
        lines += [f"  {c.id}  epoch {c.epoch}  split {c.split}" for c in trace.mixture_copies]
    if trace.split_note:
        lines.append(trace.split_note)
    if trace.data_version is not None:
        lines.append(f"checkpoints on data_version {trace.data_version}:")
        found = [
            f"  {c.path}  step {c.step}  tokens_seen {c.tokens_seen}" for c in trace.checkpoints
        ]
        lines += found or ["  none"]
        if trace.other_checkpoints:
            lines.append(f"  ({trace.other_checkpoints} other checkpoint(s) on other data)")
    return "\n".join(lines)
