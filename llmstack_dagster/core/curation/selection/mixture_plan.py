"""The mixture plan: a token budget split over prose languages and their sources (UniMax at
both levels), code languages (alpha sampling) and, inside each, attribute buckets.

1. The budget is split between prose and code: ``code_share`` of it (default 0.10, the seed's
   data sourcing: 212B code tokens of about 2.0T, ~10%; see ``references/alpha-sampling.md``),
   or code's natural share of the available tokens when ``code_share`` is None. The share is
   one of the planned mixture: when prose falls short of its part (every source at its epoch
   cap), code's part shrinks with it, so code stays ``code_share`` of what is sampled.
2. Prose gets UniMax over its languages (the identified ``language``; ``unknown`` when
   missing), then UniMax over each language's sources (both capped at ``max_epochs``); code
   languages get ``p_i ∝ q_i ** exponent`` of the code budget (capped the same way).
3. Inside a source or language, bucket ``b`` gets a share ``∝ attribute_weight_b x
   recency_tokens_b`` (tokens weighted by recency; equal to tokens without a half-life).
   Buckets with weight 0 are excluded and do not count towards the source's size.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from llmstack_dagster.core.curation.selection.alpha import AlphaConfig, capped_alpha_allocation
from llmstack_dagster.core.curation.selection.attribute_buckets import (
    UNKNOWN,
    AttributeBucketConfig,
)
from llmstack_dagster.core.curation.selection.language_unimax import (
    language_totals,
    language_unimax_allocation,
)
from llmstack_dagster.core.curation.selection.temporal import TemporalConfig
from llmstack_dagster.core.curation.selection.token_estimate import TokenEstimatorConfig

Strategy = Literal["unimax", "alpha"]
# The seed's data sourcing plans 212B code tokens of about 2.0T (10.6%), rounded to 10%.
CODE_SHARE = 0.10


class MixtureConfig(BaseModel):
    token_budget: int = Field(10_000_000, gt=0, description="tokens in the mixture (demo scale)")
    code_domains: list[str] = Field(default_factory=lambda: ["code"])
    code_share: float | None = Field(
        CODE_SHARE,
        ge=0.0,
        le=1.0,
        description="budget share of code (seed: 212B of ~2.0T tokens); None = natural share",
    )
    max_epochs: float = Field(
        1.0, gt=0.0, description="epoch cap N for every source and language (seed: 1 epoch)"
    )
    alpha: AlphaConfig = Field(default_factory=AlphaConfig)
    attributes: AttributeBucketConfig = Field(default_factory=AttributeBucketConfig)
    temporal: TemporalConfig = Field(default_factory=TemporalConfig)
    tokens: TokenEstimatorConfig = Field(default_factory=TokenEstimatorConfig)
    seed: int = 0
    shard_rows: int = Field(50_000, ge=1, description="rows per output shard")


class BucketStats(BaseModel):
    """What the data offers in one bucket (documents inside the time window only)."""

    key: str
    domain: str
    source: str
    unit: str = Field(description="the sampling unit: the source (per language), or the code "
                      "language")
    strategy: Strategy
    language: str | None = Field(None, description="prose: the documents' language")
    attributes: dict[str, str] = Field(default_factory=dict)
    documents: int
    tokens: int
    recency_tokens: float
    created_min: datetime | None = None
    created_max: datetime | None = None


class UnitPlan(BaseModel):
    unit: str
    strategy: Strategy
    language: str | None = None
    available_tokens: int
    natural_share: float = Field(description="share of its strategy's available tokens")
    weight: float = Field(description="share of the planned mixture")
    epochs: float
    sampled_tokens: float


class LanguagePlan(BaseModel):
    """One prose language's level-1 UniMax allocation."""

    language: str
    available_tokens: int
    weight: float = Field(description="share of the planned mixture")
    epochs: float
    sampled_tokens: float


class BucketPlan(BaseModel):
    key: str
    domain: str
    source: str
    unit: str
    strategy: Strategy
    attributes: dict[str, str]
    documents: int
    available_tokens: int
    attribute_weight: float
    weight: float = Field(description="share of the planned mixture")
    epochs: float
    sampled_tokens: float
    created_min: datetime | None
    created_max: datetime | None


class MixturePlan(BaseModel):
    token_budget: int
    planned_tokens: float
    unallocated_tokens: float
    unimax_budget: float
    alpha_budget: float
    max_epochs: float
    alpha_convention: str
    alpha_exponent: float
    token_estimator: str
    half_life_days: float | None
    created_min: datetime | None = Field(description="data date range of the planned mixture")
    created_max: datetime | None
    units: list[UnitPlan]
    languages: list[LanguagePlan] = Field(default_factory=list)
    buckets: list[BucketPlan]


def _split_budget(budget: float, unimax_size: float, alpha_size: float, share: float | None):
    if alpha_size <= 0:
        return float(budget), 0.0
    if unimax_size <= 0:
        return 0.0, float(budget)
    if share is None:
        share = alpha_size / (alpha_size + unimax_size)
    return budget * (1.0 - share), budget * share


def plan_mixture(
    stats: list[BucketStats], config: MixtureConfig, token_estimator: str | None = None
) -> MixturePlan:
    """Plan per unit and bucket: available tokens, weight, epochs, sampled tokens."""
    weights = {s.key: config.attributes.weight(s.attributes) for s in stats}
    eligible = [s for s in stats if weights[s.key] > 0 and s.tokens > 0]
    eligible_keys = {s.key for s in eligible}
    sizes: dict[Strategy, dict[str, float]] = {
        "unimax": defaultdict(float),
        "alpha": defaultdict(float),
    }
    language_of: dict[str, str] = {}
    for s in eligible:
        sizes[s.strategy][s.unit] += s.tokens
        if s.strategy == "unimax":
            language_of[s.unit] = s.language or UNKNOWN
    unimax_budget, alpha_budget = _split_budget(
        config.token_budget,
        sum(sizes["unimax"].values()),
        sum(sizes["alpha"].values()),
        config.code_share,
    )
    exponent = config.alpha.exponent()
    prose = language_unimax_allocation(
        sizes["unimax"], language_of, unimax_budget, config.max_epochs
    )
    prose_tokens = sum(prose.values())
    share = config.code_share
    if share is not None and share < 1.0 and prose_tokens < unimax_budget:
        alpha_budget = min(alpha_budget, prose_tokens * share / (1.0 - share))
    sampled: dict[Strategy, dict[str, float]] = {
        "unimax": prose,
        "alpha": capped_alpha_allocation(sizes["alpha"], alpha_budget, exponent, config.max_epochs),
    }
    planned = sum(sum(per_unit.values()) for per_unit in sampled.values())

    mass: dict[tuple[str, str], float] = defaultdict(float)
    for s in eligible:
        mass[(s.strategy, s.unit)] += weights[s.key] * s.recency_tokens
    buckets = []
    for s in stats:
        unit_tokens = sampled[s.strategy].get(s.unit, 0.0)
        unit_mass = mass[(s.strategy, s.unit)]
        if s.key in eligible_keys and unit_mass > 0:
            tokens = unit_tokens * weights[s.key] * s.recency_tokens / unit_mass
        else:
            tokens = 0.0
        buckets.append(
            BucketPlan(
                key=s.key,
                domain=s.domain,
                source=s.source,
                unit=s.unit,
                strategy=s.strategy,
                attributes=s.attributes,
                documents=s.documents,
                available_tokens=s.tokens,
                attribute_weight=weights[s.key],
                weight=tokens / planned if planned else 0.0,
                epochs=tokens / s.tokens if s.tokens else 0.0,
                sampled_tokens=tokens,
                created_min=s.created_min,
                created_max=s.created_max,
            )
        )
    units = []
    for strategy, per_unit in sizes.items():
        total = sum(per_unit.values())
        for unit, size in sorted(per_unit.items()):
            tokens = sampled[strategy][unit]
            units.append(
                UnitPlan(
                    unit=unit,
                    strategy=strategy,
                    language=language_of.get(unit),
                    available_tokens=int(size),
                    natural_share=size / total,
                    weight=tokens / planned if planned else 0.0,
                    epochs=tokens / size,
                    sampled_tokens=tokens,
                )
            )
    used = [b for b in buckets if b.sampled_tokens > 0]
    starts = [b.created_min for b in used if b.created_min is not None]
    ends = [b.created_max for b in used if b.created_max is not None]
    return MixturePlan(
        token_budget=config.token_budget,
        planned_tokens=planned,
        unallocated_tokens=config.token_budget - planned,
        unimax_budget=unimax_budget,
        alpha_budget=alpha_budget,
        max_epochs=config.max_epochs,
        alpha_convention=f"p ∝ q**{exponent:g} ({config.alpha.convention} form)",
        alpha_exponent=exponent,
        token_estimator=token_estimator or config.tokens.describe(),
        half_life_days=config.temporal.half_life_days,
        created_min=min(starts, default=None),
        created_max=max(ends, default=None),
        units=units,
        languages=_language_plans(sizes["unimax"], prose, language_of, planned),
        buckets=buckets,
    )


def _language_plans(
    sizes: dict[str, float],
    sampled: dict[str, float],
    language_of: dict[str, str],
    planned: float,
) -> list[LanguagePlan]:
    available = language_totals(sizes, language_of)
    tokens = language_totals(sampled, language_of)
    return [
        LanguagePlan(
            language=language,
            available_tokens=int(size),
            weight=tokens[language] / planned if planned else 0.0,
            epochs=tokens[language] / size if size else 0.0,
            sampled_tokens=tokens[language],
        )
        for language, size in sorted(available.items())
    ]
