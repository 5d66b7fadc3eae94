"""Metrics against values computed by hand on small fixed inputs."""

from __future__ import annotations

import numpy as np
import pytest

from llmstack_dagster.core.evaluation.metrics import (
    expected_max_toxicity,
    extract_gsm8k_answer,
    gsm8k_correct,
    rate,
    toxicity_by_category,
    toxicity_probability,
)

# 4 prompts x 3 samples; row maxima 0.7, 0.4, 0.9, 0.49
SCORES = np.array(
    [
        [0.1, 0.7, 0.2],
        [0.3, 0.4, 0.05],
        [0.9, 0.5, 0.6],
        [0.0, 0.2, 0.49],
    ]
)


def test_expected_max_toxicity() -> None:
    assert expected_max_toxicity(SCORES) == pytest.approx((0.7 + 0.4 + 0.9 + 0.49) / 4)
    assert expected_max_toxicity(np.array([[0.2], [0.4]])) == pytest.approx(0.3)


def test_toxicity_probability() -> None:
    assert toxicity_probability(SCORES) == 0.5  # rows 1 and 3 reach 0.5
    assert toxicity_probability(SCORES, threshold=0.45) == 0.75
    assert toxicity_probability(np.array([[0.5, 0.0]])) == 1.0  # the threshold counts as toxic
    assert toxicity_probability(np.array([[0.49, 0.1]])) == 0.0


def test_toxicity_by_category() -> None:
    out = toxicity_by_category(["threat", "insult", "threat", "insult"], SCORES)
    assert list(out) == ["insult", "threat", "all"]
    assert out["threat"] == {
        "prompts": 2,
        "samples_per_prompt": 3,
        "expected_max_toxicity": pytest.approx(0.8),
        "toxicity_probability": 1.0,
    }
    assert out["insult"]["expected_max_toxicity"] == pytest.approx(0.445)
    assert out["insult"]["toxicity_probability"] == 0.0
    assert out["all"]["prompts"] == 4
    assert out["all"]["expected_max_toxicity"] == pytest.approx(0.6225)
    with pytest.raises(ValueError, match="categories"):
        toxicity_by_category(["a"], SCORES)


def test_bad_shapes_are_errors() -> None:
    with pytest.raises(ValueError):
        expected_max_toxicity(np.array([0.1, 0.2]))
    with pytest.raises(ValueError):
        toxicity_probability(np.zeros((0, 25)))


def test_rate_never_reports_zero_for_not_measured() -> None:
    assert rate([True, False, True, True]) == 0.75
    assert rate([False, False]) == 0.0
    assert rate([]) is None


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("She sells 9 * 2 = <<9*2=18>>18.\n#### 18", "18"),
        ("The total is\n#### 1,234", "1234"),
        ("So she makes $18.", "18"),
        ("#### $1,000.00", "1000"),
        ("It is 3.0 meters", "3"),
        ("The price drops to 0.50 dollars.", "0.5"),
        ("The temperature falls to -5 degrees", "-5"),
        ("16-3-4=9", "9"),
        ("#### 72\nSome later note about 5 cats", "72"),
        ("Step 1: 16 - 3 - 4 = 9 eggs.\nStep 2: 9 * 2 = 18.\nShe earns 18 dollars a day.", "18"),
        ("I am not sure how to solve this.", None),
        ("#### ", None),
    ],
)
def test_extract_gsm8k_answer(text: str, answer: str | None) -> None:
    assert extract_gsm8k_answer(text) == answer


def test_gsm8k_correct() -> None:
    assert gsm8k_correct("Janet makes $18 every day.", "18")
    assert gsm8k_correct("The answer is 18.00", "#### 18")
    assert gsm8k_correct("#### 1,234", "1234")
    assert not gsm8k_correct("The answer is 19.", "18")
    assert not gsm8k_correct("I do not know.", "18")
