from datetime import UTC, datetime

import pytest

from llmstack_dagster.core.curation.selection.attribute_buckets import (
    AttributeBucketConfig,
    CategoricalAttribute,
)
from llmstack_dagster.core.curation.selection.mixture_plan import (
    CODE_SHARE,
    BucketStats,
    MixtureConfig,
    plan_mixture,
)


def _stats(key, domain, source, unit, strategy, tokens, quality="unknown", year=2020):
    return BucketStats(
        key=key,
        domain=domain,
        source=source,
        unit=unit,
        strategy=strategy,
        attributes={"quality": quality},
        documents=1,
        tokens=tokens,
        recency_tokens=float(tokens),
        created_min=datetime(year, 1, 1, tzinfo=UTC),
        created_max=datetime(year, 6, 1, tzinfo=UTC),
    )


STATS = [
    _stats("cc-high", "web", "cc", "cc", "unimax", 100, "high", 2019),
    _stats("cc-low", "web", "cc", "cc", "unimax", 100, "low", 2021),
    _stats("cc-bad", "web", "cc", "cc", "unimax", 500, "bad", 2010),
    _stats("xsum", "news", "xsum", "xsum", "unimax", 50),
    _stats("py", "code", "gh", "python", "alpha", 300),
    _stats("c", "code", "gh", "c", "alpha", 100),
]
WEIGHTS = AttributeBucketConfig(
    quality=CategoricalAttribute(column="quality_class", weights={"high": 3.0, "bad": 0.0})
)


def test_hand_computed_plan():
    config = MixtureConfig(token_budget=130, code_share=0.5, attributes=WEIGHTS)
    plan = plan_mixture(STATS, config)
    tokens = {b.key: b.sampled_tokens for b in plan.buckets}
    # prose: 65 tokens; UniMax over xsum (50) and cc (200, "bad" excluded): 32.5 each;
    # inside cc: high 3 x 100 vs low 1 x 100 -> 3/4 and 1/4
    assert tokens["xsum"] == pytest.approx(32.5)
    assert tokens["cc-high"] == pytest.approx(32.5 * 0.75)
    assert tokens["cc-low"] == pytest.approx(32.5 * 0.25)
    assert tokens["cc-bad"] == 0
    # code: 65 tokens, q = (0.75, 0.25), p ∝ q^1.3: 0.75^1.3 = 0.687986, 0.25^1.3 = 0.164938
    assert tokens["py"] == pytest.approx(65 * 0.806620, rel=1e-5)
    assert tokens["c"] == pytest.approx(65 * 0.193380, rel=1e-5)
    assert plan.planned_tokens == pytest.approx(130)
    assert sum(b.weight for b in plan.buckets) == pytest.approx(1.0)
    high = next(b for b in plan.buckets if b.key == "cc-high")
    assert high.epochs == pytest.approx(0.24375)
    assert plan.created_min == datetime(2019, 1, 1, tzinfo=UTC)  # the excluded 2010 bucket
    assert plan.created_max == datetime(2021, 6, 1, tzinfo=UTC)
    assert "1.3" in plan.alpha_convention


def test_budget_above_epochs_times_total_leaves_unallocated():
    prose = [s for s in STATS if s.strategy == "unimax"]
    plan = plan_mixture(prose, MixtureConfig(token_budget=10_000, max_epochs=2))
    assert plan.planned_tokens == pytest.approx(2 * 750)
    assert plan.unallocated_tokens == pytest.approx(10_000 - 1500)
    assert all(b.epochs == pytest.approx(2.0) for b in plan.buckets)


def test_natural_code_share_and_code_only():
    plan = plan_mixture(STATS, MixtureConfig(token_budget=1000, code_share=None))
    assert plan.alpha_budget == pytest.approx(1000 * 400 / 1150)
    # with no prose at all, code takes the whole budget whatever code_share says
    code_only = plan_mixture(STATS[4:], MixtureConfig(token_budget=1000))
    assert code_only.alpha_budget == 1000 and code_only.unimax_budget == 0
    assert {u.unit for u in code_only.units} == {"python", "c"}


def test_default_code_share_is_the_seeds_ten_percent():
    assert MixtureConfig().code_share == CODE_SHARE == 0.10
    plan = plan_mixture(STATS, MixtureConfig(token_budget=400))
    assert plan.alpha_budget == pytest.approx(40) and plan.unimax_budget == pytest.approx(360)
    code = sum(b.weight for b in plan.buckets if b.domain == "code")
    assert code == pytest.approx(40 / plan.planned_tokens)
