"""Quality scoring (Parmar et al. 2024, stages 3-4): ``reference_lm`` then ``quality_scored``.

Every document gets CCNet perplexity and bucket, NeMo Curator / Gopher heuristics (code gets
its own rules), quality, toxicity and domain attributes, and a ``keep`` decision under the
run's preset. The full scored set and the kept set are both stored, so another threshold
never needs a re-run of scoring.
"""

from collections.abc import Iterator

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    SpecificPartitionsPartitionMapping,
    asset,
)

from llmstack_dagster.assets.common import (
    CURATION_GROUP,
    GLOBAL_ASSETS_POOL,
    RECURATE_ON_CHANGE,
    chart_metadata,
    committed_version,
    domain_partitions,
    markdown_table,
    materialization,
    resume_key,
    shard_metadata,
    version_metadata,
)
from llmstack_dagster.core.curation.quality.presets import LanguageFilter
from llmstack_dagster.core.curation.quality.reference_lm import (
    CODE_VERSION as REFERENCE_LM_CODE_VERSION,
)
from llmstack_dagster.core.curation.quality.reference_lm import (
    ReferenceLMConfig,
    reference_lm_of,
    train_reference_lm,
)
from llmstack_dagster.core.curation.quality.scoring import CODE_VERSION as SCORING_CODE_VERSION
from llmstack_dagster.core.curation.quality.scoring import QualityConfig, score_quality
from llmstack_dagster.core.storage import read_manifest
from llmstack_dagster.profiles import profiled
from llmstack_dagster.resources.shard_map import ShardMapResource
from llmstack_dagster.resources.storage import StorageResource


@profiled("reference_lm")
class ReferenceLMAssetConfig(Config):
    """CCNet defaults: order-5 KenLM over SentencePiece pieces of the reference corpus."""

    reference_domains: list[str] = ["wiki", "books"]
    negatives_domain: str = "web"
    order: int = 5
    vocab_size: int = 32_000
    scoring: str = "document"  # CCNet as released: the whole normalized document; or "line"
    seed: int = 0


@asset(
    code_version=REFERENCE_LM_CODE_VERSION,
    group_name=CURATION_GROUP,
    automation_condition=RECURATE_ON_CHANGE,
    output_required=False,
    pool=GLOBAL_ASSETS_POOL,
    # the partitions it reads (declarative automation still runs it after a change in another
    # domain; its content version is then unchanged, so it commits and materializes nothing)
    deps=[AssetDep("deduplicated_documents", partition_mapping=SpecificPartitionsPartitionMapping(
        [*ReferenceLMAssetConfig().reference_domains, ReferenceLMAssetConfig().negatives_domain]
    ))],  # fmt: skip
    description="KenLM n-gram model (lmplz + build_binary) on the CCNet-normalized, "
    "SentencePiece-tokenized reference corpus; head/middle/tail perplexity cut-offs; the "
    "pipeline's own quality classifier (reference = positives, raw web = negatives).",
)
def reference_lm(
    context: AssetExecutionContext, config: ReferenceLMAssetConfig, storage: StorageResource
) -> Iterator[MaterializeResult]:
    store = storage.get()
    previous = committed_version(store, "reference_lm", None)
    reference = {
        d: read_manifest(store, "deduplicated_documents", d) for d in config.reference_domains
    }
    web = read_manifest(store, "deduplicated_documents", config.negatives_domain)
    manifest = train_reference_lm(
        store,
        reference,
        web,
        ReferenceLMConfig(
            reference_domains=config.reference_domains,
            order=config.order,
            vocab_size=config.vocab_size,
            scoring=config.scoring,
            seed=config.seed,
        ),
    )
    ref = reference_lm_of(manifest)
    result = materialization(context, manifest, previous, lambda: {
        "order": MetadataValue.int(ref.order),
        "model_bytes": MetadataValue.int(ref.model_bytes),
        "sentencepiece_vocab": MetadataValue.int(ref.vocab_size),
        "ngram_counts": MetadataValue.json({str(k): v for k, v in ref.ngram_counts.items()}),
        "bucket_cutoffs": MetadataValue.json(list(ref.bucket_cutoffs)),
        "bucket_source": MetadataValue.text(ref.bucket_source),
        "perplexity_scoring": MetadataValue.text(ref.scoring),
        "reference_docs": MetadataValue.int(ref.reference_docs),
        "reference_perplexity_median": MetadataValue.float(ref.reference_perplexity_median),
        "web_perplexity_median": MetadataValue.float(ref.web_perplexity_median),
        "classifier_metrics": MetadataValue.json(ref.classifier_metrics),
        "kenlm_model": MetadataValue.path(store.url(ref.kenlm_path)),
        **version_metadata(manifest),
    })  # fmt: skip
    if result is not None:
        yield result


@profiled("quality_scored")
class QualityAssetConfig(Config):
    """``preset``: general (Longpre T=0.975 on the low-quality score),
    toxicity-identification (inverse toxicity filter) or safety-critical (toxicity filter)."""

    preset: str = "general"
    max_perplexity: float = 5000.0
    code_domains: list[str] = ["code"]
    # language filter (prose), replacing the preset's CCNet rule (any language, score >= 0.5)
    # when either is set; FineWeb's: languages ["en"], min_language_score 0.65
    languages: list[str] | None = None
    min_language_score: float | None = None


def _language_filter(config: QualityAssetConfig) -> LanguageFilter | None:
    if config.languages is None and config.min_language_score is None:
        return None
    return LanguageFilter(languages=config.languages, min_score=config.min_language_score)


@asset(
    code_version=SCORING_CODE_VERSION,
    partitions_def=domain_partitions,
    group_name=CURATION_GROUP,
    automation_condition=RECURATE_ON_CHANGE,
    output_required=False,
    deps=["deduplicated_documents", "reference_lm"],
    check_specs=[
        AssetCheckSpec("counts_balance", asset="quality_scored", description="in = kept + dropped")
    ],
    description="Perplexity, heuristics and attributes for every document, a keep flag under "
    "the preset, and the reasons it fails; full scored set and kept set both stored.",
)
def quality_scored(
    context: AssetExecutionContext,
    config: QualityAssetConfig,
    storage: StorageResource,
    shard_map: ShardMapResource,
) -> Iterator[MaterializeResult | AssetCheckResult]:
    store = storage.get()
    domain = context.partition_key
    previous = committed_version(store, "quality_scored", domain)
    ref = reference_lm_of(read_manifest(store, "reference_lm", None))
    documents = read_manifest(store, "deduplicated_documents", domain)
    manifest = score_quality(
        store,
        documents,
        domain,
        ref,
        QualityConfig(
            preset=config.preset,
            max_perplexity=config.max_perplexity,
            code_domains=config.code_domains,
            language_filter=_language_filter(config),
        ),
        shard_map.get(),
        resume_key(context),
    )
    extra = manifest.extra
    keep_rates = [
        {"reason": r, "keep_rate": round(v, 4)}
        for r, v in sorted(extra["keep_rate_per_reason"].items())
    ]
    result = materialization(context, manifest, previous, lambda: {
        **shard_metadata(store, manifest),
        "preset": MetadataValue.json(extra["preset"]),
        "keep_rate_per_reason": MetadataValue.md(markdown_table(keep_rates)),
        "drops_per_first_reason": MetadataValue.json(extra["drops_per_first_reason"]),
        "keep_rate_per_domain": MetadataValue.json(extra["keep_rate_per_domain"]),
        "language_counts": MetadataValue.json(extra["language_counts"]),
        "perplexity_histogram": chart_metadata(
            context.instance, store, extra["perplexity_histogram_png"], "perplexity histogram"
        ),
        "attribute_distributions": MetadataValue.json(extra["distributions"]),
        "scored_shards": MetadataValue.json(
            [store.url(s["path"]) for s in extra["scored_shards"]]
        ),
    })  # fmt: skip
    if result is not None:
        yield result
    counts = manifest.counts
    yield AssetCheckResult(
        check_name="counts_balance",
        passed=counts["in"] == counts["kept"] + counts["dropped"],
        metadata=dict(counts),
    )
