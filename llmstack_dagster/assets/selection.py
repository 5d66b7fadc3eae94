"""Data selection and sampling: ``dsir_selected`` per domain, then ``sampled_mixture``."""

from collections.abc import Iterator
from datetime import datetime

from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    StaticPartitionMapping,
    asset,
)

from llmstack_dagster.assets.common import (
    CURATION_GROUP,
    GLOBAL_ASSETS_POOL,
    RECURATE_ON_CHANGE,
    TOKENIZER_REL,
    chart_metadata,
    committed_version,
    domain_partitions,
    markdown_table,
    materialization,
    resume_key,
    shard_metadata,
    yaml_overrides,
)
from llmstack_dagster.core.curation.selection.alpha import AlphaConfig
from llmstack_dagster.core.curation.selection.composition import domain_markdown, domain_rows
from llmstack_dagster.core.curation.selection.dsir import CODE_VERSION as DSIR_CODE_VERSION
from llmstack_dagster.core.curation.selection.dsir import DSIRConfig, fit_dsir_target, select_dsir
from llmstack_dagster.core.curation.selection.mixture import CODE_VERSION as MIXTURE_CODE_VERSION
from llmstack_dagster.core.curation.selection.mixture import materialize_mixture
from llmstack_dagster.core.curation.selection.mixture_plan import MixtureConfig
from llmstack_dagster.core.curation.selection.temporal import TemporalConfig
from llmstack_dagster.core.storage import read_manifest
from llmstack_dagster.profiles import profiled
from llmstack_dagster.resources.shard_map import ShardMapResource
from llmstack_dagster.resources.storage import StorageResource


@profiled("dsir_selected")
class DSIRAssetConfig(Config):
    """DSIR (Xie et al. 2023) at source level; defaults are the paper's and the seed's."""

    keep_fraction: float = 0.95
    num_buckets: int = 10_000
    ngrams: int = 2
    target_domains: list[str] = ["wiki", "books"]
    min_example_length: int = 0
    seed: int = 0

    def core(self) -> DSIRConfig:
        return DSIRConfig.model_validate(self.model_dump())


def _own_and_target_domains() -> StaticPartitionMapping:
    """quality_scored[d] -> dsir_selected[d], and each target domain -> every domain."""
    domains = domain_partitions.get_partition_keys()
    targets = set(DSIRAssetConfig().target_domains)
    return StaticPartitionMapping({d: set(domains) if d in targets else {d} for d in domains})


@asset(
    code_version=DSIR_CODE_VERSION,
    partitions_def=domain_partitions,
    group_name=CURATION_GROUP,
    automation_condition=RECURATE_ON_CHANGE,
    output_required=False,
    # a domain's selection reads its own scores and the target domains' scores
    deps=[AssetDep("quality_scored", partition_mapping=_own_and_target_domains())],
    description="DSIR importance resampling per domain: hashed uni+bigram models of the target "
    "(reference) corpus and of the domain; Gumbel top-k keeps keep_fraction of the domain; "
    "every document's log-importance weight is kept.",
)
def dsir_selected(
    context: AssetExecutionContext,
    config: DSIRAssetConfig,
    storage: StorageResource,
    shard_map: ShardMapResource,
) -> Iterator[MaterializeResult]:
    store = storage.get()
    previous = committed_version(store, "dsir_selected", context.partition_key)
    core = config.core()
    target = {d: read_manifest(store, "quality_scored", d) for d in core.target_domains}
    target_counts = fit_dsir_target(store, target, core)
    documents = read_manifest(store, "quality_scored", context.partition_key)
    manifest = select_dsir(
        store, documents, context.partition_key, target_counts, core, shard_map.get(),
        resume_key(context),
    )  # fmt: skip
    extra = manifest.extra
    result = materialization(context, manifest, previous, lambda: {
        **shard_metadata(store, manifest),
        "realized_keep_fraction": MetadataValue.float(float(extra["realized_keep_fraction"])),
        "log_weight_kept": MetadataValue.json(extra["log_weight_kept"]),
        "log_weight_dropped": MetadataValue.json(extra["log_weight_dropped"]),
    })  # fmt: skip
    if result is not None:
        yield result


@profiled("sampled_mixture")
class MixtureAssetConfig(Config):
    """Token budget and sampling knobs; ``profile_path`` (YAML) sets any MixtureConfig field,
    including attribute buckets (domain x quality class x toxicity band x category)."""

    token_budget: int = 2_500_000_000  # ~20 tokens/parameter for d12 (Hoffmann et al. 2022)
    max_epochs: float = 1.0
    alpha: float = 1.3
    alpha_convention: str = "alpha"
    temperature: float = 1.0
    half_life_days: float | None = None
    created_after: str | None = None
    created_before: str | None = None
    seed: int = 0
    profile_path: str = ""

    def core(self) -> MixtureConfig:
        config = MixtureConfig.model_validate(yaml_overrides(self.profile_path))
        return config.model_copy(
            update={
                "token_budget": self.token_budget,
                "max_epochs": self.max_epochs,
                "seed": self.seed,
                "alpha": AlphaConfig(
                    convention=self.alpha_convention, alpha=self.alpha, temperature=self.temperature
                ),
                "temporal": TemporalConfig(
                    created_after=_date(self.created_after),
                    created_before=_date(self.created_before),
                    half_life_days=self.half_life_days,
                    reference_date=config.temporal.reference_date,
                ),
            }
        )


def _date(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _token_counter(store):
    """Token counts from the pipeline's tokenizer once one was trained (a previous
    materialization of ``tokenizer``); None falls back to the documented estimator."""
    if not store.exists(TOKENIZER_REL):
        return None
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(store.read_bytes(TOKENIZER_REL).decode("utf-8"))

    def pipeline_tokenizer(texts: list[str]) -> list[int]:
        return [len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False)]

    return pipeline_tokenizer


@asset(
    code_version=MIXTURE_CODE_VERSION,
    group_name=CURATION_GROUP,
    automation_condition=RECURATE_ON_CHANGE,
    output_required=False,
    pool=GLOBAL_ASSETS_POOL,
    deps=[AssetDep("dsir_selected", partition_mapping=AllPartitionMapping())],
    description="The token budget turned into a mixture plan (UniMax over prose languages, "
    "then over each language's sources, "
    "alpha sampling over code languages, attribute buckets, temporal window and recency) and "
    "materialized as shuffled, seeded shards.",
)
def sampled_mixture(
    context: AssetExecutionContext, config: MixtureAssetConfig, storage: StorageResource
) -> Iterator[MaterializeResult]:
    store = storage.get()
    previous = committed_version(store, "sampled_mixture", None)
    selected = {
        d: read_manifest(store, "dsir_selected", d) for d in domain_partitions.get_partition_keys()
    }
    manifest = materialize_mixture(store, selected, config.core(), _token_counter(store))
    extra = manifest.extra
    plan = extra["plan"]
    context.log.info(
        f"mixture: planned {extra['planned_tokens']} tokens, realized {extra['realized_tokens']}"
    )
    result = materialization(context, manifest, previous, lambda: {
            **shard_metadata(store, manifest),
            "composition": MetadataValue.md(extra["composition_markdown"]),
            "composition_by_domain": MetadataValue.md(
                domain_markdown(domain_rows(extra["composition_buckets"]))
            ),
            "composition_chart": chart_metadata(
                context.instance, store, extra["chart_path"], "planned vs realized shares"
            ),
            "plan": MetadataValue.json(plan),
            "plan_path": MetadataValue.path(store.url(extra["plan_path"])),
            "token_budget": MetadataValue.int(int(extra["token_budget"])),
            "planned_tokens": MetadataValue.int(int(extra["planned_tokens"])),
            "realized_tokens": MetadataValue.int(int(extra["realized_tokens"])),
            "token_estimator": MetadataValue.text(str(extra["token_estimator"])),
            "data_date_range": MetadataValue.text(
                f"{extra['realized_created_min']} .. {extra['realized_created_max']}"
            ),
            "buckets": MetadataValue.md(markdown_table(extra["composition_buckets"][:50])),
            "languages": MetadataValue.md(markdown_table(plan["languages"])),
    })  # fmt: skip
    if result is not None:
        yield result
