import pytest

from llmstack_dagster.core.curation.selection.alpha import (
    AlphaConfig,
    alpha_probabilities,
    capped_alpha_allocation,
)


def test_square_by_hand():
    # q = (0.8, 0.2); q^2 = (0.64, 0.04); normalized by 0.68
    p = alpha_probabilities({"py": 80, "c": 20}, 2.0)
    assert p == pytest.approx({"py": 0.64 / 0.68, "c": 0.04 / 0.68})


def test_seed_alpha_by_hand():
    # 0.6^1.3 = 0.514750, 0.3^1.3 = 0.209054, 0.1^1.3 = 0.050119; sum 0.773923
    p = alpha_probabilities({"py": 60, "js": 30, "c": 10}, AlphaConfig().exponent())
    assert p == pytest.approx({"py": 0.665119, "js": 0.270122, "c": 0.064759}, abs=1e-5)


def test_temperature_form_is_the_inverse_exponent():
    # T = 2 -> sqrt: q = (0.64, 0.36) -> (0.8, 0.6) / 1.4
    config = AlphaConfig(convention="temperature", temperature=2.0)
    assert config.exponent() == 0.5
    p = alpha_probabilities({"a": 64, "b": 36}, config.exponent())
    assert p == pytest.approx({"a": 0.8 / 1.4, "b": 0.6 / 1.4})
    same = AlphaConfig(convention="temperature", temperature=1 / 1.3).exponent()
    assert same == pytest.approx(AlphaConfig().exponent())


def test_exponent_one_keeps_natural_shares_and_empty_gets_zero():
    assert alpha_probabilities({"a": 3, "b": 1, "c": 0}, 1.0) == pytest.approx(
        {"a": 0.75, "b": 0.25, "c": 0.0}
    )
    assert alpha_probabilities({"a": 0}, 1.3) == {"a": 0.0}


def test_capped_allocation_respects_epochs_and_leaves_the_rest_unallocated() -> None:
    sizes = {"python": 600.0, "c": 300.0, "js": 100.0}
    probs = alpha_probabilities(sizes, 1.3)
    # budget under every cap: exactly the alpha shares
    small = capped_alpha_allocation(sizes, 200.0, 1.3, max_epochs=1.0)
    assert small == pytest.approx({k: 200.0 * p for k, p in probs.items()})
    # python's share (~0.66 * 900 = 596) fits; with 950 it would need > 600: it is capped and
    # the overflow goes to c and js by their probabilities
    mid = capped_alpha_allocation(sizes, 950.0, 1.3, max_epochs=1.0)
    assert mid["python"] == pytest.approx(600.0)
    assert sum(mid.values()) == pytest.approx(950.0)
    assert mid["c"] / mid["js"] == pytest.approx(probs["c"] / probs["js"])
    # a budget beyond N x total: everything capped at N epochs, the rest unallocated
    big = capped_alpha_allocation(sizes, 10_000.0, 1.3, max_epochs=2.0)
    assert big == pytest.approx({k: 2.0 * v for k, v in sizes.items()})
    assert capped_alpha_allocation(sizes, 10_000.0, 1.3, None)["python"] > 1200.0
