"""NeMo Curator heuristics at both sides of their seed thresholds."""

from __future__ import annotations

import pytest
from boundary import assert_flips_at_threshold

from llmstack_dagster.core.curation.quality.heuristics import HeuristicsConfig, heuristic_metrics
from llmstack_dagster.core.curation.quality.rules import failed_rules

BASE = (
    "The river town woke slowly, and the baker opened her shop before the sun had cleared the "
    "hills.\nChildren walked to school with their satchels, talking about a fox that had been "
    "seen near the old mill.\n\nAt noon the market filled with farmers who brought apples, cheese "
    "and bread to trade with travelling merchants.\nNobody could remember a warmer autumn, so the "
    "elders decided to have a festival with music and dancing.\n"
)
RULES = {rule.name: rule for rule in HeuristicsConfig().rules()}


def test_base_document_passes_every_rule() -> None:
    assert failed_rules(heuristic_metrics(BASE), list(RULES.values())) == []


@pytest.mark.parametrize(
    ("name", "piece"),
    [
        ("non_alnum_fraction", " %&*"),
        ("digit_fraction", " 1234567890"),
        ("url_fraction", " https://example.org/a/b"),
    ],
)
def test_fraction_rules_flip_at_threshold(name: str, piece: str) -> None:
    assert_flips_at_threshold(lambda k: BASE + piece * k, RULES[name], heuristic_metrics)


def test_nemo_alphanumeric_definition_counts_sentence_punctuation() -> None:
    # NeMo counts letters, digits, newlines and ?!,. as alphanumeric; spaces and % do not.
    assert heuristic_metrics("ab, c%")["non_alnum_fraction"] == pytest.approx(2 / 6)


def test_word_count_bounds() -> None:
    rule = RULES["word_count"]
    words = ["lantern"] * 100_001
    for n, fails in ((49, True), (50, False), (100_000, False), (100_001, True)):
        assert rule.fails(heuristic_metrics(" ".join(words[:n]))["word_count"]) is fails


def test_mean_word_length_bounds() -> None:
    rule = RULES["mean_word_length"]
    cases = [
        (["abc"] * 60, False),
        (["abc"] * 59 + ["ab"], True),
        (["abcdefghij"] * 60, False),
        (["abcdefghij"] * 59 + ["abcdefghijk"], True),
    ]
    for words, fails in cases:
        assert rule.fails(heuristic_metrics(" ".join(words))["mean_word_length"]) is fails


def test_ascii_fast_path_counts_as_the_character_classes() -> None:
    ascii_text = BASE + "Tabs\tand #tags, 42 % of $7.50! https://x.org/a?b=1\x07\n"
    accented = ascii_text + "é"  # the same text, one character more, counted by the regexes
    fast, slow = heuristic_metrics(ascii_text), heuristic_metrics(accented)
    n = len(ascii_text)
    assert round(fast["non_alnum_fraction"] * n) == round(slow["non_alnum_fraction"] * (n + 1)) - 1
    assert round(fast["digit_fraction"] * n) == round(slow["digit_fraction"] * (n + 1)) == 6
