"""Preset decisions: which reasons apply to which rule set and preset."""

from __future__ import annotations

import pytest

from llmstack_dagster.core.curation.quality.decision import failed_reasons
from llmstack_dagster.core.curation.quality.presets import get_preset
from llmstack_dagster.core.curation.quality.rules import Rule

RULES = {"prose": [Rule(name="word_count", metric="word_count", min=50)], "code": []}


def row(**overrides: object) -> dict:
    base = {"input_issue": None, "rule_set": "prose", "word_count": 100.0, "perplexity": 300.0,
            "quality_high_prob": 0.5, "toxicity": 0.2}  # fmt: skip
    return {**base, **overrides}


def reasons(preset: str, least_toxic_below: float | None = None, **overrides: object) -> list:
    return failed_reasons(row(**overrides), RULES, 5000.0, get_preset(preset), least_toxic_below)


def test_general_preset() -> None:
    assert reasons("general") == []
    assert reasons("general", perplexity=5001.0) == ["perplexity"]
    assert reasons("general", quality_high_prob=0.024) == ["low_quality"]  # 1 - p = 0.976 > T
    assert reasons("general", quality_high_prob=0.026) == []
    assert reasons("general", toxicity=0.99) == []  # no toxicity filter
    assert reasons("general", word_count=10.0, perplexity=9e9) == ["word_count", "perplexity"]


def test_toxicity_presets() -> None:
    assert reasons("safety-critical", toxicity=0.51) == ["toxicity"]
    assert reasons("safety-critical", toxicity=0.49) == []
    assert reasons("toxicity-identification", 0.05, toxicity=0.01) == ["least_toxic"]
    assert reasons("toxicity-identification", 0.05, toxicity=0.2, quality_high_prob=0.0) == []


def test_code_skips_prose_models_and_input_issue_wins() -> None:
    assert reasons("general", rule_set="code", perplexity=1e6, quality_high_prob=0.0) == []
    assert reasons("general", input_issue="binary", word_count=1.0) == ["binary"]


def test_unknown_preset_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown quality preset"):
        get_preset("aggressive")
