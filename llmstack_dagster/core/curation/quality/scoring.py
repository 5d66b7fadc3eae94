"""The ``quality_scored`` runner: score every document of a domain, decide keep/drop under a
preset, write the full scored set, the kept set and drop records.

Pass 1 scores shard by shard into ``scores/`` and accumulates bounded histograms; pass 2
(cheap) applies the preset, which may need a partition-wide quantile (the inverse toxicity
filter), and writes ``scored/``, ``kept/`` and ``drops/``. ``scores/`` carries a fingerprint of
everything the scores depend on, so re-materializing with another preset or threshold reuses
them and never re-runs the models.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import tempfile
from collections import Counter
from functools import partial
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, Field

from llmstack_dagster.core.curation.quality.attributes.domain_classifier import (
    DomainClassifierConfig,
    load_domain_classifier,
)
from llmstack_dagster.core.curation.quality.attributes.embeddings import EmbeddingConfig
from llmstack_dagster.core.curation.quality.attributes.quality_classifier import (
    QualityClassifierConfig,
    load_quality_classifier,
)
from llmstack_dagster.core.curation.quality.attributes.toxicity import (
    ToxicityConfig,
    load_toxicity_scorer,
)
from llmstack_dagster.core.curation.quality.attributes.training import load_trained_attributes
from llmstack_dagster.core.curation.quality.code_rules import CodeRulesConfig
from llmstack_dagster.core.curation.quality.decision import failed_reasons
from llmstack_dagster.core.curation.quality.document_scores import (
    INPUT_ISSUES,
    METRIC_FIELDS,
    Scorers,
    score_texts,
)
from llmstack_dagster.core.curation.quality.gopher import GopherConfig
from llmstack_dagster.core.curation.quality.heuristics import HeuristicsConfig
from llmstack_dagster.core.curation.quality.language import LanguageIdConfig, LanguageIdentifier
from llmstack_dagster.core.curation.quality.presets import LanguageFilter, Preset, get_preset
from llmstack_dagster.core.curation.quality.reference_lm import (
    ReferenceLM,
    load_perplexity_model,
)
from llmstack_dagster.core.curation.quality.report import ScoreSummary
from llmstack_dagster.core.curation.quality.rules import Rule
from llmstack_dagster.core.progress import Progress
from llmstack_dagster.core.scale.resumable import map_resumable
from llmstack_dagster.core.scale.shard_map import ShardMap, local_or
from llmstack_dagster.core.schema import DOCUMENT_SCHEMA, DROP_SCHEMA, make_drop
from llmstack_dagster.core.storage import (
    OutputVersion,
    ShardInfo,
    ShardManifest,
    ShardWriter,
    Storage,
    build_version,
    content_version,
    iter_shard_tables,
)

ASSET = "quality_scored"
log = logging.getLogger(__name__)
CODE_VERSION = "1"
SCORES_INDEX = "scores.json"
SCORES_CACHE = posixpath.join(ASSET, "_scores")  # per domain; not a partition (names: no "_")
STAGE = "quality_scored"
REASONS_BEYOND_RULES = (*INPUT_ISSUES, "language", "language_score", "perplexity", "low_quality",
                        "toxicity", "least_toxic")  # fmt: skip

SCORE_FIELDS = [
    pa.field("input_issue", pa.string()),
    pa.field("rule_set", pa.string()),
    pa.field("language_score", pa.float64()),  # prose: lid.176 probability of ``language``
    pa.field("perplexity", pa.float64()),
    pa.field("ccnet_bucket", pa.string()),
    *(pa.field(name, pa.float64()) for name in METRIC_FIELDS),
    pa.field("quality_label", pa.string()),
    pa.field("quality_high_prob", pa.float64()),
    pa.field("toxicity", pa.float64()),
    pa.field("domain_label", pa.string()),
    pa.field("domain_prob", pa.float64()),
]
DECISION_FIELDS = [
    pa.field("preset", pa.string(), nullable=False),
    pa.field("keep", pa.bool_(), nullable=False),
    pa.field("reasons", pa.list_(pa.string()), nullable=False),
]
KEPT_SCHEMA = pa.schema([*DOCUMENT_SCHEMA, *SCORE_FIELDS])
"""The kept set: documents with their scores and attributes, for attribute-based sampling."""
SCORED_SCHEMA = pa.schema([*DOCUMENT_SCHEMA, *SCORE_FIELDS, *DECISION_FIELDS])
"""DOCUMENT_SCHEMA + every score column + the preset's decision (``keep``, ``reasons``)."""


class QualityConfig(BaseModel):
    """Seed thresholds (issue 4) and the active preset."""

    preset: str = "general"
    max_perplexity: float | None = 5000.0
    code_domains: list[str] = Field(default_factory=lambda: ["code"])
    max_doc_chars: int = 1_000_000
    batch_size: int = 256
    heuristics: HeuristicsConfig = Field(default_factory=HeuristicsConfig)
    gopher: GopherConfig = Field(default_factory=GopherConfig)
    code: CodeRulesConfig = Field(default_factory=CodeRulesConfig)
    quality_classifier: QualityClassifierConfig = Field(default_factory=QualityClassifierConfig)
    toxicity: ToxicityConfig = Field(default_factory=ToxicityConfig)
    domain_classifier: DomainClassifierConfig = Field(default_factory=DomainClassifierConfig)
    # the sentence-embedding model and device of the MiniLM options (one pass per batch)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    language_id: LanguageIdConfig = Field(default_factory=LanguageIdConfig)
    # replaces the preset's language filter (e.g. presets.FINEWEB_ENGLISH); None = the preset's
    language_filter: LanguageFilter | None = None

    def active_preset(self) -> Preset:
        """The named preset, with ``language_filter`` in place of its own when set."""
        preset = get_preset(self.preset)
        if self.language_filter is None:
            return preset
        return preset.model_copy(update={"language": self.language_filter})

    def rules(self) -> dict[str, list[Rule]]:
        prose = self.heuristics.rules() + self.gopher.quality_rules()
        return {"prose": prose + self.gopher.repetition_rules(), "code": self.code.rules()}


def load_scorers(storage: Storage, ref: ReferenceLM, config: QualityConfig, cache: str) -> Scorers:
    """The models for scoring (the KenLM model is copied into ``cache`` if storage is remote)."""
    trained = load_trained_attributes(storage.read_bytes(ref.classifier_path))
    return Scorers(
        perplexity=load_perplexity_model(storage, ref, cache),
        bucket_cutoffs=ref.bucket_cutoffs,
        quality=load_quality_classifier(config.quality_classifier, trained.quality,
                                        trained.quality_features),  # fmt: skip
        toxicity=load_toxicity_scorer(config.toxicity),
        domain=load_domain_classifier(config.domain_classifier, trained.domain, config.embedding),
        code_marker_lines=config.code.marker_lines,
        max_chars=config.max_doc_chars,
        language=LanguageIdentifier(config.language_id),
        embedding=config.embedding,
    )


def load_worker_scorers(
    storage: Storage, ref: ReferenceLM, config: QualityConfig
) -> tuple[Scorers, tempfile.TemporaryDirectory]:
    """A worker's models, loaded once (the folder holds a remote KenLM copy while it lives)."""
    cache = tempfile.TemporaryDirectory(prefix="quality-")
    return load_scorers(storage, ref, config, cache.name), cache


def score_shard(
    storage: Storage, is_code: bool, batch_size: int, folder: str,
    state: tuple[Scorers, tempfile.TemporaryDirectory], job: tuple[int, ShardInfo],
) -> list[ShardInfo]:  # fmt: skip
    """Scores of one document shard, written as ``{folder}/part-<index>-*`` (one engine task)."""
    index, shard = job
    scorers = state[0]
    writer = ShardWriter(storage, folder, KEPT_SCHEMA, prefix=f"part-{index:05d}")
    for batch in storage.read_table(shard.path).to_batches(max_chunksize=batch_size):
        docs = batch.to_pylist()
        for doc, scores in zip(docs, score_texts([d["text"] for d in docs], is_code, scorers),
                               strict=True):  # fmt: skip
            writer.write_row({**doc, **scores})
    return writer.close()


def _score_pass(
    storage: Storage, documents: ShardManifest, is_code: bool, reference_lm: ReferenceLM,
    config: QualityConfig, folder: str, engine: ShardMap, work: str,
) -> list[ShardInfo]:  # fmt: skip
    """Pass 1, one task per document shard on ``engine``; the models load once per worker.
    Tasks recorded in ``work`` by an earlier attempt are not run again."""
    progress = Progress(f"{ASSET}[{documents.partition}] scoring", documents.rows, log)
    written = map_resumable(
        engine, storage, work,
        partial(score_shard, storage, is_code, config.batch_size, folder),
        list(enumerate(documents.shards)),
        setup=partial(load_worker_scorers, storage, reference_lm, config),
        on_result=lambda shards: progress.advance(sum(s.rows for s in shards)),
    )  # fmt: skip
    progress.finish()
    return [shard for shards in written for shard in shards]


def _summarize(storage: Storage, shards: list[ShardInfo], summary: ScoreSummary) -> None:
    """Add every stored score row to the histograms."""
    for _, table in iter_shard_tables(storage, shards):
        for row in table.to_pylist():
            summary.add(row)


def scoring_fingerprint(
    documents: ShardManifest, reference_lm: ReferenceLM, config: QualityConfig, is_code: bool
) -> str:
    """What the scores depend on: the input shards, the reference LM and the models' settings;
    not the preset or any threshold, which only decide."""
    payload = {
        "documents": documents.content_version or documents.model_dump(),
        # the model files' paths name their version folder; the rest identifies the models
        "reference_lm": reference_lm.model_dump(mode="json", exclude=MODEL_PATHS),
        "models": [config.quality_classifier.model_dump(mode="json"),
                   config.toxicity.model_dump(mode="json"),
                   config.domain_classifier.model_dump(mode="json"),
                   config.embedding.model_dump(mode="json", exclude={"device", "batch_size"}),
                   config.language_id.model_dump(mode="json")],
        "code_marker_lines": config.code.marker_lines,
        "max_doc_chars": config.max_doc_chars,
        "is_code": is_code,
    }  # fmt: skip
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _cached_scores(
    storage: Storage, folder: str, fingerprint: str, summary: ScoreSummary
) -> list[ShardInfo] | None:
    """The stored score shards of an earlier run with the same fingerprint (rebuilding the
    histograms from them), or None."""
    rel = posixpath.join(folder, SCORES_INDEX)
    if not storage.exists(rel):
        return None
    index = storage.read_json(rel)
    if index.get("fingerprint") != fingerprint:
        return None
    shards = [ShardInfo.model_validate(s) for s in index["shards"]]
    _summarize(storage, shards, summary)
    return shards


MODEL_PATHS = {"kenlm_path", "sp_path", "classifier_path"}


def _reason_names(config: QualityConfig) -> list[str]:
    names = [rule.name for rules in config.rules().values() for rule in rules]
    return names + list(REASONS_BEYOND_RULES)


def _drop_row(row: dict[str, Any], domain: str, reasons: list[str]) -> dict[str, Any]:
    return make_drop(
        stage=STAGE, domain=domain, reason=reasons[0], source=row["source"], id=row["id"],
        detail=json.dumps(reasons), sample=row["text"],
    )  # fmt: skip


def score_quality(
    storage: Storage,
    documents: ShardManifest,
    domain: str,
    reference_lm: ReferenceLM,
    config: QualityConfig,
    shard_map: ShardMap | None = None,
    resume_key: str | None = None,
) -> ShardManifest:
    """Score, decide and write one domain partition; see the module docstring. Scoring runs
    one task per document shard on ``shard_map`` (default: inline on this machine); a retry
    with the same ``resume_key`` scores only the shards not done yet.

    Returns the manifest of the kept set (``shards``) with the drops; ``extra`` holds the scored
    shards, keep rates per reason and per domain, the histogram PNG path and the attribute
    distributions.
    """
    is_code = domain in config.code_domains
    engine = local_or(shard_map)
    engine.require_shared_root(storage.root)
    fingerprint = scoring_fingerprint(documents, reference_lm, config, is_code)
    decision = {"preset": config.active_preset().model_dump(mode="json"),
                "max_perplexity": config.max_perplexity,
                "rules": config.model_dump(mode="json", include={"heuristics", "gopher", "code"})}
    version_id = content_version(ASSET, CODE_VERSION, decision, [fingerprint])  # fmt: skip

    def build(version: OutputVersion) -> ShardManifest:
        summary = ScoreSummary()
        scores_dir = posixpath.join(SCORES_CACHE, domain)
        pass1_shards = _cached_scores(storage, scores_dir, fingerprint, summary)
        reused = pass1_shards is not None
        if pass1_shards is None:
            for name in storage.entries(scores_dir):  # a retry's finished shards stay
                if name != fingerprint[:16]:
                    storage.rm(posixpath.join(scores_dir, name))
            pass1_shards = _score_pass(storage, documents, is_code, reference_lm, config,
                                       posixpath.join(scores_dir, fingerprint[:16]), engine,
                                       version.work("score"))  # fmt: skip
            _summarize(storage, pass1_shards, summary)
            index = {"fingerprint": fingerprint, "shards": [s.model_dump() for s in pass1_shards]}
            storage.write_json(posixpath.join(scores_dir, SCORES_INDEX), index)
        manifest = _decide(storage, domain, reference_lm, config, pass1_shards, summary,
                           version.folder)  # fmt: skip
        manifest.extra["scores_reused"] = reused
        return manifest

    return build_version(storage, ASSET, domain, version_id, build, resume_key)


def _decide(
    storage: Storage, domain: str, reference_lm: ReferenceLM, config: QualityConfig,
    pass1_shards: list[ShardInfo], summary: ScoreSummary, base: str,
) -> ShardManifest:  # fmt: skip
    """Apply the preset to the stored scores: the scored set, the kept set and the drops."""
    preset = config.active_preset()
    least_toxic_below = None
    if preset.drop_least_toxic_fraction:
        least_toxic_below = summary.toxicity_quantile(preset.drop_least_toxic_fraction)
    rules = config.rules()
    scored = ShardWriter(storage, posixpath.join(base, "scored"), SCORED_SCHEMA)
    kept = ShardWriter(storage, posixpath.join(base, "kept"), KEPT_SCHEMA)
    drops = ShardWriter(storage, posixpath.join(base, "drops"), DROP_SCHEMA, prefix="drops")
    fails: Counter[str] = Counter()
    first_reasons: Counter[str] = Counter()
    per_domain_in: Counter[str] = Counter()
    languages: Counter[str] = Counter()  # identified languages of the scored prose
    per_domain_kept: Counter[str] = Counter()
    total = 0
    for _, table in iter_shard_tables(storage, pass1_shards):
        for row in table.to_pylist():
            reasons = failed_reasons(row, rules, config.max_perplexity, preset, least_toxic_below)
            total += 1
            per_domain_in[row["domain"]] += 1
            if row["language_score"] is not None:
                languages[row["language"]] += 1
            fails.update(set(reasons))
            scored.write_row({**row, "preset": preset.name, "keep": not reasons,
                              "reasons": reasons})  # fmt: skip
            if reasons:
                first_reasons[reasons[0]] += 1
                drops.write_row(_drop_row(row, domain, reasons))
            else:
                per_domain_kept[row["domain"]] += 1
                kept.write_row(row)
    scored_shards, kept_shards, drop_shards = scored.close(), kept.close(), drops.close()

    png_rel = posixpath.join(base, "perplexity_histogram.png")
    storage.write_bytes(
        png_rel,
        summary.perplexity_png(f"{domain}: CCNet perplexity", reference_lm.bucket_cutoffs,
                               config.max_perplexity),
    )  # fmt: skip
    n_kept = sum(s.rows for s in kept_shards)
    return ShardManifest(
        asset=ASSET,
        partition=domain,
        shards=kept_shards,
        drops=drop_shards,
        counts={"in": total, "kept": n_kept, "dropped": total - n_kept},
        extra={
            "preset": preset.model_dump(),
            "least_toxic_below": least_toxic_below,
            "scored_shards": [s.model_dump() for s in scored_shards],
            "keep_rate_per_reason": {r: 1 - fails[r] / total for r in _reason_names(config)}
            if total
            else {},
            "drops_per_first_reason": dict(sorted(first_reasons.items())),
            "keep_rate_per_domain": {d: per_domain_kept[d] / n for d, n in per_domain_in.items()},
            "language_counts": dict(languages.most_common()),
            "perplexity_histogram_png": png_rel,
            "bucket_cutoffs": list(reference_lm.bucket_cutoffs),
            "distributions": summary.distributions(),
        },
    )
