"""DSIR (Xie et al. 2023, "Data Selection for Language Models via Importance Resampling"),
applied per domain.

A target and the domain's raw documents are each modelled as a bag of hashed n-grams; a
document's log-importance weight is ``log w_i = sum_j z_ij (log(gamma_j + eps) -
log(beta_j + eps))`` with ``z_i`` its bucket counts, ``gamma`` and ``beta`` the normalized
target and raw bucket counts. ``keep_fraction`` of the domain is then drawn without replacement
with probability proportional to ``w_i`` (Gumbel top-k). Three streaming passes over the
domain's shards: raw counts, weights (one float per document, the global index), output.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import zlib
from collections.abc import Iterable, Iterator
from functools import partial

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, Field

from llmstack_dagster.core.curation.selection.gumbel import gumbel_top_k
from llmstack_dagster.core.curation.selection.ngram_features import HashedBatch, NgramHasher
from llmstack_dagster.core.curation.selection.shard_tables import (
    conform,
    iter_column_batches,
    unified_schema,
)
from llmstack_dagster.core.scale.resumable import map_resumable
from llmstack_dagster.core.scale.shard_map import ShardMap, local_or
from llmstack_dagster.core.schema import DROP_SCHEMA, make_drop
from llmstack_dagster.core.storage import (
    ShardInfo,
    ShardManifest,
    ShardWriter,
    Storage,
    build_version,
    content_version,
    work_dir,
)

ASSET = "dsir_selected"
CODE_VERSION = "1"
WEIGHT_COLUMN = "dsir_log_weight"
REASON_NOT_SELECTED = "dsir_not_selected"
REASON_TOO_SHORT = "dsir_too_short"


class DSIRConfig(BaseModel):
    """DSIR at source level. Featurization defaults are the reference implementation's."""

    keep_fraction: float = Field(0.95, gt=0.0, le=1.0, description="seed's per-domain rate")
    ngrams: int = Field(2, ge=1, description="unigrams + bigrams (Xie et al. 2023)")
    num_buckets: int = Field(10_000, ge=1, description="hashed feature dimension (paper)")
    epsilon: float = Field(1e-8, gt=0.0, description="smoothing inside the logs (reference)")
    min_example_length: int = Field(
        0,
        ge=0,
        description="documents with fewer word tokens are never selected; the reference uses "
        "100 for fixed-size chunks, our inputs already passed the quality word-count filter",
    )
    raw_fit_max_ngrams: int | None = Field(
        1_000_000_000,
        description="stop fitting the raw model after this many n-grams (the reference's "
        "'auto' = 100k x buckets); None fits on everything",
    )
    target_domains: list[str] = Field(
        default_factory=lambda: ["wiki", "books"],
        description="domains whose kept documents form the target (the reference corpus)",
    )
    seed: int = 0
    batch_size: int = Field(4096, ge=1)
    memo_size: int = Field(2_000_000, ge=1, description="bounded gram -> bucket memo")

    def hasher(self) -> NgramHasher:
        return NgramHasher(self.ngrams, self.num_buckets, self.memo_size)


def _batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _text_batches(
    storage: Storage, source: dict[str, ShardManifest] | ShardManifest | Iterable[str], size: int
) -> Iterator[list[str]]:
    if isinstance(source, ShardManifest):
        source = {source.partition or source.asset: source}
    if isinstance(source, dict):
        for manifest in source.values():
            yield from iter_column_batches(storage, manifest.shards, "text", size)
    else:
        yield from _batches(source, size)


def fit_bucket_counts(
    batches: Iterable[list[str]], hasher: NgramHasher, max_ngrams: int | None = None
) -> np.ndarray:
    """Summed hashed n-gram counts; stops after the document that passes ``max_ngrams``."""
    counts = np.zeros(hasher.num_buckets, dtype=np.int64)
    for texts in batches:
        batch = hasher.hash_batch(texts)
        if max_ngrams is not None:
            room = max_ngrams - int(counts.sum())
            per_doc = np.bincount(batch.doc_of, minlength=len(batch.lengths))
            over = np.nonzero(np.cumsum(per_doc) > room)[0]
            if len(over):
                last = batch.ids[batch.doc_of <= over[0]]
                return counts + np.bincount(last, minlength=hasher.num_buckets)
        counts += batch.bucket_counts(hasher.num_buckets)
    return counts


def fit_dsir_target(
    storage: Storage,
    target: dict[str, ShardManifest] | Iterable[str],
    config: DSIRConfig | None = None,
) -> np.ndarray:
    """Bucket counts of the target: manifests (their ``text`` column) or plain texts."""
    config = config or DSIRConfig()
    return fit_bucket_counts(_text_batches(storage, target, config.batch_size), config.hasher())


def log_importance_ratio(
    target_counts: np.ndarray, raw_counts: np.ndarray, epsilon: float = 1e-8
) -> np.ndarray:
    """``log(gamma + eps) - log(beta + eps)`` per bucket, gamma/beta the normalized counts."""
    gamma = target_counts / max(target_counts.sum(), 1)
    beta = raw_counts / max(raw_counts.sum(), 1)
    return np.log(gamma + epsilon) - np.log(beta + epsilon)


def log_importance_weights(
    batches: Iterable[list[str]], hasher: NgramHasher, log_ratio: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per document: log-importance weight ``z_i · log_ratio`` and word-token count."""
    weights: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    for texts in batches:
        batch: HashedBatch = hasher.hash_batch(texts)
        weights.append(batch.document_sums(log_ratio))
        lengths.append(batch.lengths)
    if not weights:
        return np.empty(0), np.empty(0, dtype=np.int64)
    return np.concatenate(weights), np.concatenate(lengths)


def select_indices(
    log_weights: np.ndarray, lengths: np.ndarray, domain: str, config: DSIRConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (selected, too short): ``keep_fraction`` of the eligible documents,
    drawn by Gumbel top-k with a generator seeded by ``(seed, domain)``."""
    eligible = np.nonzero(lengths >= config.min_example_length)[0]
    k = int(round(config.keep_fraction * len(eligible)))
    rng = np.random.default_rng([config.seed, zlib.crc32(domain.encode())])
    selected = np.zeros(len(log_weights), dtype=bool)
    selected[eligible[gumbel_top_k(log_weights[eligible], k, rng)]] = True
    too_short = lengths < config.min_example_length
    return selected, too_short


def _quantiles(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {}
    qs = np.quantile(values, [0.0, 0.1, 0.5, 0.9, 1.0])
    return dict(zip(["min", "p10", "p50", "p90", "max"], map(float, qs), strict=True))


def featurize_shard(
    storage: Storage, config: DSIRConfig, shard: ShardInfo
) -> tuple[np.ndarray, np.ndarray]:
    """One shard's summed bucket counts and each of its documents' n-gram count."""
    hasher = config.hasher()
    counts = np.zeros(hasher.num_buckets, dtype=np.int64)
    per_doc = [np.zeros(0, dtype=np.int64)]
    for texts in iter_column_batches(storage, [shard], "text", config.batch_size):
        batch = hasher.hash_batch(texts)
        counts += batch.bucket_counts(hasher.num_buckets)
        per_doc.append(np.bincount(batch.doc_of, minlength=len(batch.lengths)))
    return counts, np.concatenate(per_doc)


def weigh_shard(
    storage: Storage, config: DSIRConfig, log_ratio: np.ndarray, shard: ShardInfo
) -> tuple[np.ndarray, np.ndarray]:
    """Log-importance weight and word-token count of each document of one shard."""
    batches = iter_column_batches(storage, [shard], "text", config.batch_size)
    return log_importance_weights(batches, config.hasher(), log_ratio)


def raw_bucket_counts(
    storage: Storage, documents: ShardManifest, config: DSIRConfig, engine: ShardMap, work: str
) -> np.ndarray:
    """:func:`fit_bucket_counts` over the domain with its cap, one engine task per shard: the
    shard where the cap falls is refitted up to the document that passes it. Finished tasks
    are recorded in ``work`` (see :func:`~llmstack_dagster.core.scale.resumable.map_resumable`)."""
    features = map_resumable(
        engine, storage, work, partial(featurize_shard, storage, config), documents.shards
    )
    counts = np.zeros(config.num_buckets, dtype=np.int64)
    cap = config.raw_fit_max_ngrams
    for shard, (shard_counts, per_doc) in zip(documents.shards, features, strict=True):
        if cap is not None and int(counts.sum()) + int(per_doc.sum()) > cap:
            batches = iter_column_batches(storage, [shard], "text", config.batch_size)
            return counts + fit_bucket_counts(batches, config.hasher(), cap - int(counts.sum()))
        counts += shard_counts
    return counts


def select_dsir(
    storage: Storage,
    documents: ShardManifest,
    domain: str,
    target_counts: np.ndarray,
    config: DSIRConfig | None = None,
    shard_map: ShardMap | None = None,
    resume_key: str | None = None,
) -> ShardManifest:
    """Run DSIR on one domain's documents; returns the ``dsir_selected`` manifest.

    Kept documents keep all their columns plus ``dsir_log_weight``; the others are drops with
    reason ``dsir_not_selected`` (or ``dsir_too_short``) and their weight in ``detail``.
    Featurization and weighting run one task per shard on ``shard_map`` (default inline); a
    retry with the same ``resume_key`` runs only the tasks not done yet (see
    :func:`~llmstack_dagster.core.storage.write_version`).
    """
    config = config or DSIRConfig()
    engine = local_or(shard_map)
    engine.require_shared_root(storage.root)
    target_hash = hashlib.sha256(np.ascontiguousarray(target_counts).tobytes()).hexdigest()
    version_id = content_version(
        ASSET, CODE_VERSION, config, [documents.content_version, target_hash]
    )
    return build_version(
        storage, ASSET, domain, version_id,
        lambda v: _select(storage, documents, domain, target_counts, config, v.folder, engine),
        resume_key,
    )  # fmt: skip


def _select(
    storage: Storage,
    documents: ShardManifest,
    domain: str,
    target_counts: np.ndarray,
    config: DSIRConfig,
    folder: str,
    engine: ShardMap,
) -> ShardManifest:
    if len(target_counts) != config.num_buckets:
        raise ValueError(f"target has {len(target_counts)} buckets, config {config.num_buckets}")

    raw_counts = raw_bucket_counts(
        storage, documents, config, engine, work_dir(folder, "featurize")
    )
    log_ratio = log_importance_ratio(target_counts, raw_counts, config.epsilon)
    weigh = partial(weigh_shard, storage, config, log_ratio)
    weighed = map_resumable(engine, storage, work_dir(folder, "weigh"), weigh, documents.shards)
    log_weights = np.concatenate([np.empty(0)] + [w for w, _ in weighed])
    lengths = np.concatenate([np.empty(0, dtype=np.int64)] + [n for _, n in weighed])
    selected, too_short = select_indices(log_weights, lengths, domain, config)

    ratio_path = posixpath.join(folder, "log_ratio.npy")
    with storage.open_atomic(ratio_path) as handle:
        np.save(handle, log_ratio)
    schema = unified_schema(
        storage, documents.shards, pa.schema([pa.field(WEIGHT_COLUMN, pa.float64())])
    )
    kept = ShardWriter(storage, posixpath.join(folder, "data"), schema)
    drops = ShardWriter(storage, posixpath.join(folder, "drops"), DROP_SCHEMA, prefix="drops")
    start = 0
    for shard in documents.shards:
        table = storage.read_table(shard.path)
        stop = start + table.num_rows
        weights = log_weights[start:stop]
        table = table.append_column(WEIGHT_COLUMN, pa.array(weights, pa.float64()))
        mask = selected[start:stop]
        kept.write_table(conform(table.filter(pa.array(mask)), schema))
        for i in np.nonzero(~mask)[0]:
            drops.write_row(
                make_drop(
                    stage=ASSET,
                    domain=domain,
                    reason=REASON_TOO_SHORT if too_short[start + i] else REASON_NOT_SELECTED,
                    source=table.column("source")[i].as_py(),
                    id=table.column("id")[i].as_py(),
                    detail=json.dumps({WEIGHT_COLUMN: float(weights[i])}),
                    sample=table.column("text")[i].as_py(),
                )
            )
        start = stop

    n_selected = int(selected.sum())
    return ShardManifest(
        asset=ASSET,
        partition=domain,
        shards=kept.close(),
        drops=drops.close(),
        counts={
            "in": len(log_weights),
            "kept": n_selected,
            "dropped": len(log_weights) - n_selected,
            REASON_NOT_SELECTED: int((~selected & ~too_short).sum()),
            REASON_TOO_SHORT: int(too_short.sum()),
        },
        extra={
            "keep_fraction": config.keep_fraction,
            "realized_keep_fraction": n_selected / max(len(log_weights), 1),
            "raw_ngrams_fitted": int(raw_counts.sum()),
            "target_ngrams": int(target_counts.sum()),
            "log_weight_kept": _quantiles(log_weights[selected]),
            "log_weight_dropped": _quantiles(log_weights[~selected]),
            "log_ratio_path": storage.url(ratio_path),
            "seed": config.seed,
        },
    )
