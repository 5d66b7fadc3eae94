"""Materialize the mixture: bucket the selected documents, plan, sample, repeat, shuffle.

Pass 1 reads the bucket columns of every shard into a per-document index (bucket, tokens,
created; the global index this stage needs). The plan fixes each bucket's sampled tokens
``T = epochs x available``: every document is written ``floor(epochs)`` times, and for the
fractional rest the documents are ordered by Gumbel keys on their log recency weight (uniform
without a half-life) and the prefix whose tokens come closest to the rest is written once
more. So a bucket at <= 1 epoch is never repeated. Pass 2 writes copies (repeat ``e`` gets id
``<id>#epoch<e>`` and ``original_id`` in metadata) through a seeded external shuffle, and
drops (``not_sampled``, ``outside_time_window``).
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llmstack_dagster.core.curation.selection.attribute_buckets import UNKNOWN
from llmstack_dagster.core.curation.selection.composition import (
    composition_chart_png,
    composition_markdown,
    composition_rows,
)
from llmstack_dagster.core.curation.selection.external_shuffle import ExternalShuffle
from llmstack_dagster.core.curation.selection.gumbel import gumbel_keys
from llmstack_dagster.core.curation.selection.mixture_plan import (
    BucketStats,
    MixtureConfig,
    MixturePlan,
    plan_mixture,
)
from llmstack_dagster.core.curation.selection.shard_tables import shard_schema
from llmstack_dagster.core.curation.selection.temporal import from_micros
from llmstack_dagster.core.curation.selection.token_estimate import TokenCounter, estimate_tokens
from llmstack_dagster.core.schema import DOCUMENT_SCHEMA, DROP_SCHEMA, make_drop
from llmstack_dagster.core.storage import (
    ShardInfo,
    ShardManifest,
    ShardWriter,
    Storage,
    build_version,
    content_version,
)

ASSET = "sampled_mixture"
CODE_VERSION = "2"  # 2: UniMax across prose languages, then their sources
BUCKET_COLUMN = "mixture_bucket"
EPOCH_COLUMN = "mixture_epoch"
MIXTURE_SCHEMA = pa.schema(
    list(DOCUMENT_SCHEMA)
    + [pa.field(BUCKET_COLUMN, pa.string(), nullable=False), pa.field(EPOCH_COLUMN, pa.int32())]
)
REASON_NOT_SAMPLED = "not_sampled"
REASON_OUTSIDE_WINDOW = "outside_time_window"


@dataclass
class DocumentIndex:
    """Per document, in shard order: bucket number, tokens, created (UTC microseconds)."""

    buckets: list[BucketStats] = field(default_factory=list)
    bucket_of: list[np.ndarray] = field(default_factory=list)
    tokens: list[np.ndarray] = field(default_factory=list)
    created: list[np.ndarray] = field(default_factory=list)


def _shards(selected: dict[str, ShardManifest]) -> list[ShardInfo]:
    return [shard for name in sorted(selected) for shard in selected[name].shards]


def _bucket_numbers(
    table: pa.Table, config: MixtureConfig, numbers: dict[tuple, int], index: DocumentIndex
) -> np.ndarray:
    domains = table.column("domain").to_pylist()
    sources = table.column("source").to_pylist()
    languages = table.column("language").to_pylist()
    labels = config.attributes.label_columns(table)
    names = list(labels)
    out = np.empty(table.num_rows, dtype=np.int32)
    for row, parts in enumerate(zip(domains, sources, languages, *labels.values(), strict=True)):
        domain, source, language, *values = parts
        code = domain in config.code_domains
        signature = (domain, source, (language or UNKNOWN) if code else language, *values)
        if signature not in numbers:
            attributes = dict(zip(names, values, strict=True))
            key_parts = [f"domain={domain}", f"source={source}"]
            if code or language is not None:
                attributes = {"language": signature[2], **attributes}
            key_parts += [f"{k}={v}" for k, v in attributes.items()]
            numbers[signature] = len(index.buckets)
            index.buckets.append(
                BucketStats(
                    key="|".join(key_parts),
                    domain=domain,
                    source=source,
                    unit=signature[2] if code else prose_unit(source, language),
                    strategy="alpha" if code else "unimax",
                    language=None if code else language,
                    attributes=attributes,
                    documents=0,
                    tokens=0,
                    recency_tokens=0.0,
                )
            )
        out[row] = numbers[signature]
    return out


def prose_unit(source: str, language: str | None) -> str:
    """A prose sampling unit: a source's documents in one language (``source:language``), or
    the source when its documents carry no language."""
    return source if language is None else f"{source}:{language}"


def index_documents(
    storage: Storage,
    shards: list[ShardInfo],
    config: MixtureConfig,
    token_counter: TokenCounter | None = None,
) -> DocumentIndex:
    """Pass 1: bucket, token estimate and date of every document."""
    index = DocumentIndex()
    numbers: dict[tuple, int] = {}
    wanted = {"text", "domain", "source", "language", "created"}
    wanted |= {attribute.column for _, attribute in config.attributes.active()}
    for shard in shards:
        columns = [n for n in shard_schema(storage, shard).names if n in wanted]
        table = storage.read_table(shard.path, columns=columns)
        index.bucket_of.append(_bucket_numbers(table, config, numbers, index))
        index.tokens.append(estimate_tokens(table.column("text"), config.tokens, token_counter))
        created = pc.cast(table.column("created"), pa.int64()).to_numpy(zero_copy_only=False)
        index.created.append(created)
    return index


def bucket_stats(
    index: DocumentIndex,
    bucket_of: np.ndarray,
    tokens: np.ndarray,
    created: np.ndarray,
    in_window: np.ndarray,
    recency: np.ndarray,
) -> list[BucketStats]:
    """Aggregate the in-window documents per bucket (empty buckets are left out)."""
    n = len(index.buckets)
    inside = bucket_of[in_window]
    documents = np.bincount(inside, minlength=n)
    token_sums = np.bincount(inside, weights=tokens[in_window], minlength=n)
    recency_sums = np.bincount(inside, weights=(tokens * recency)[in_window], minlength=n)
    first = np.full(n, np.iinfo(np.int64).max)
    last = np.full(n, np.iinfo(np.int64).min)
    np.minimum.at(first, inside, created[in_window])
    np.maximum.at(last, inside, created[in_window])
    return [
        b.model_copy(
            update={
                "documents": int(documents[i]),
                "tokens": int(token_sums[i]),
                "recency_tokens": float(recency_sums[i]),
                "created_min": from_micros(first[i]),
                "created_max": from_micros(last[i]),
            }
        )
        for i, b in enumerate(index.buckets)
        if documents[i] > 0
    ]


def copies_per_document(
    plan: MixturePlan,
    keys: list[str],
    bucket_of: np.ndarray,
    tokens: np.ndarray,
    eligible: np.ndarray,
    order_keys: np.ndarray,
) -> np.ndarray:
    """How many times each document is written, following the plan's epochs per bucket."""
    planned = {b.key: b for b in plan.buckets}
    copies = np.zeros(len(bucket_of), dtype=np.int32)
    candidates = np.nonzero(eligible)[0]
    order = candidates[np.lexsort((-order_keys[candidates], bucket_of[candidates]))]
    bounds = np.searchsorted(bucket_of[order], np.arange(len(keys) + 1))
    for number, key in enumerate(keys):
        members = order[bounds[number] : bounds[number + 1]]
        if not len(members):
            continue
        bucket = planned[key]
        full = int(np.floor(bucket.epochs + 1e-9))
        rest = bucket.sampled_tokens - full * bucket.available_tokens
        copies[members] = full
        if rest > 0.5:
            cumulative = np.cumsum(tokens[members])
            take = int(np.searchsorted(cumulative, rest, side="right"))
            below = cumulative[take - 1] if take else 0
            if take < len(members) and cumulative[take] - rest < rest - below:
                take += 1
            copies[members[:take]] += 1
    return copies


def _expand(table: pa.Table, copies: np.ndarray, bucket_keys: list[str]) -> pa.Table:
    """Each row ``copies`` times; repeats get ``#epoch<e>`` ids and ``original_id``."""
    rows = np.repeat(np.arange(table.num_rows), copies)
    starts = np.concatenate([[0], np.cumsum(copies)[:-1]])
    epochs = np.arange(len(rows)) - starts[rows] + 1
    out = table.select(DOCUMENT_SCHEMA.names).take(rows)
    ids = out.column("id").to_pylist()
    metadata = out.column("metadata").to_pylist()
    for i in np.nonzero(epochs > 1)[0]:
        meta = json.loads(metadata[i])
        meta["original_id"] = ids[i]
        metadata[i] = json.dumps(meta, sort_keys=True, ensure_ascii=False)
        ids[i] = f"{ids[i]}#epoch{epochs[i]}"
    out = out.set_column(0, "id", pa.array(ids, pa.string()))
    out = out.set_column(out.schema.get_field_index("metadata"), "metadata", pa.array(metadata))
    out = out.append_column(BUCKET_COLUMN, pa.array([bucket_keys[r] for r in rows], pa.string()))
    return out.append_column(EPOCH_COLUMN, pa.array(epochs, pa.int32())).cast(MIXTURE_SCHEMA)


def materialize_mixture(
    storage: Storage,
    selected: dict[str, ShardManifest],
    config: MixtureConfig | None = None,
    token_counter: TokenCounter | None = None,
) -> ShardManifest:
    """Plan and write the ``sampled_mixture`` asset from the per-domain selected documents.

    ``token_counter`` (texts -> token counts) replaces the estimator once a tokenizer exists.
    The manifest's ``extra`` holds the plan, the composition tables, Markdown and chart path.
    """
    config = config or MixtureConfig()
    inputs = [f"{d}:{m.content_version}" for d, m in sorted(selected.items())]
    settings = {"config": config.model_dump(mode="json"),
                "tokens": config.tokens.describe(token_counter)}  # fmt: skip
    version_id = content_version(ASSET, CODE_VERSION, settings, inputs)
    return build_version(
        storage, ASSET, None, version_id,
        lambda v: _materialize(storage, selected, config, token_counter, v.folder),
    )  # fmt: skip


def _materialize(
    storage: Storage,
    selected: dict[str, ShardManifest],
    config: MixtureConfig,
    token_counter: TokenCounter | None,
    folder: str,
) -> ShardManifest:
    shards = _shards(selected)
    index = index_documents(storage, shards, config, token_counter)
    bucket_of = np.concatenate(index.bucket_of) if shards else np.empty(0, np.int32)
    tokens = np.concatenate(index.tokens) if shards else np.empty(0, np.int64)
    created = np.concatenate(index.created) if shards else np.empty(0, np.int64)
    in_window = config.temporal.in_window(created)
    recency = config.temporal.recency_weights(created, in_window)
    stats = bucket_stats(index, bucket_of, tokens, created, in_window, recency)
    plan = plan_mixture(stats, config, config.tokens.describe(token_counter))
    rng = np.random.default_rng(config.seed)
    keys = [b.key for b in index.buckets]
    with np.errstate(divide="ignore"):
        order_keys = gumbel_keys(np.log(recency), rng)
    copies = copies_per_document(plan, keys, bucket_of, tokens, in_window, order_keys)

    shuffle = ExternalShuffle(
        storage,
        posixpath.join(folder, "_spill"),
        MIXTURE_SCHEMA,
        int(copies.sum()),
        config.shard_rows,
        rng,
    )
    drops = ShardWriter(storage, posixpath.join(folder, "drops"), DROP_SCHEMA, prefix="drops")
    start = 0
    for shard in shards:
        table = storage.read_table(shard.path)
        stop = start + table.num_rows
        shard_copies = copies[start:stop]
        shuffle.add(_expand(table, shard_copies, [keys[b] for b in bucket_of[start:stop]]))
        unsampled = np.nonzero(shard_copies == 0)[0]
        columns = ["id", "domain", "source", "text"]
        for i, row in zip(
            unsampled, table.select(columns).take(unsampled).to_pylist(), strict=True
        ):
            outside = not in_window[start + i]
            drops.write_row(
                make_drop(
                    stage=ASSET,
                    domain=row["domain"],
                    source=row["source"],
                    id=row["id"],
                    reason=REASON_OUTSIDE_WINDOW if outside else REASON_NOT_SAMPLED,
                    detail=keys[bucket_of[start + i]],
                    sample=row["text"],
                )
            )
        start = stop
    writer = ShardWriter(
        storage, posixpath.join(folder, "data"), MIXTURE_SCHEMA, max_rows=config.shard_rows
    )
    shuffle.write_to(writer)

    realized = np.bincount(bucket_of, weights=tokens * copies, minlength=len(keys))
    unit_rows, bucket_rows = composition_rows(plan, dict(zip(keys, realized, strict=True)))
    plan_path = posixpath.join(folder, "plan.json")
    chart_path = posixpath.join(folder, "composition.png")
    storage.write_json(plan_path, plan.model_dump(mode="json"))
    storage.write_bytes(chart_path, composition_chart_png(unit_rows))
    sampled = copies > 0
    return ShardManifest(
        asset=ASSET,
        shards=writer.close(),
        drops=drops.close(),
        counts={
            "in": len(copies),
            "kept": int(sampled.sum()),
            "dropped": int((~sampled).sum()),
            "rows": int(copies.sum()),
            "repeated_rows": int(copies.sum() - sampled.sum()),
            REASON_NOT_SAMPLED: int((~sampled & in_window).sum()),
            REASON_OUTSIDE_WINDOW: int((~in_window).sum()),
        },
        extra=_extra(plan, unit_rows, bucket_rows, created[sampled], realized, config)
        | {"plan_path": plan_path, "chart_path": chart_path},
    )


def _extra(
    plan: MixturePlan,
    unit_rows: list[dict[str, Any]],
    bucket_rows: list[dict[str, Any]],
    sampled_created: np.ndarray,
    realized: np.ndarray,
    config: MixtureConfig,
) -> dict[str, Any]:
    has_dates = len(sampled_created) > 0
    return {
        "plan": plan.model_dump(mode="json"),
        "composition": unit_rows,
        "composition_buckets": bucket_rows,
        "composition_markdown": composition_markdown(unit_rows),
        "token_budget": config.token_budget,
        "planned_tokens": plan.planned_tokens,
        "realized_tokens": float(realized.sum()),
        "token_estimator": plan.token_estimator,
        "realized_created_min": str(from_micros(sampled_created.min())) if has_dates else None,
        "realized_created_max": str(from_micros(sampled_created.max())) if has_dates else None,
        "seed": config.seed,
    }
