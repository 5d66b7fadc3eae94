import pytest

from llmstack_dagster.core.curation.selection.alpha import AlphaConfig, alpha_probabilities


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
