"""Gopher quality and repetition rules at both sides of their thresholds."""

from __future__ import annotations

import pytest
from boundary import assert_flips_at_threshold
from test_heuristics import BASE

from llmstack_dagster.core.curation.quality.gopher import (
    GopherConfig,
    quality_metrics,
    repetition_metrics,
)
from llmstack_dagster.core.curation.quality.rules import failed_rules
from llmstack_dagster.core.curation.quality.words import gopher_words

CONFIG = GopherConfig()
RULES = {r.name: r for r in CONFIG.quality_rules() + CONFIG.repetition_rules()}


def metrics(text: str) -> dict[str, float | None]:
    words = gopher_words(text)
    return {**quality_metrics(text, words), **repetition_metrics(text, words)}


def test_base_document_passes_every_rule() -> None:
    assert failed_rules(metrics(BASE), list(RULES.values())) == []


NUMBERS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
LINES = [f"Line number {w} tells the story of a quiet harbour and its boats." for w in NUMBERS]
UNIQUE = ["amber", "birch", "cedar", "dune", "elm", "fern", "grove", "heath", "iris", "juniper"]


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("hash_per_word", lambda k: BASE + " #" * k),
        ("ellipsis_per_word", lambda k: BASE + " ..." * k),
        (
            "bullet_lines",
            lambda k: "\n".join("- " + ln if i < k else ln for i, ln in enumerate(LINES)),
        ),
        (
            "ellipsis_lines",
            lambda k: "\n".join(ln + ".." if i < k else ln for i, ln in enumerate(LINES)),
        ),
        ("alpha_words", lambda k: BASE + " 42" * k),
        (
            "dup_para",
            lambda k: "\n\n".join(LINES[0] if i < k + 1 else ln for i, ln in enumerate(LINES)),
        ),
        (
            "dup_line",
            lambda k: "\n".join(LINES[0] if i < k + 1 else ln for i, ln in enumerate(LINES)),
        ),
        ("dup_para_chars", lambda k: BASE + "\n\nA short paragraph repeats." * k),
        ("dup_line_chars", lambda k: BASE + "\nA short line repeats." * k),
        ("top_2_gram", lambda k: BASE + " red kite" * k),
        ("top_3_gram", lambda k: BASE + " red kite nests" * k),
        ("top_4_gram", lambda k: BASE + " red kite nests high" * k),
        *(
            (
                f"dup_{n}_gram",
                lambda k, n=n: (
                    BASE
                    + (
                        " "
                        + " ".join(
                            [
                                "amber",
                                "birch",
                                "cedar",
                                "dune",
                                "elm",
                                "fern",
                                "grove",
                                "heath",
                                "iris",
                                "juniper",
                            ][:n]
                        )
                    )
                    * k
                ),
            )
            for n in range(5, 11)
        ),
    ],  # fmt: skip
)
def test_rule_flips_at_threshold(name: str, make) -> None:
    assert_flips_at_threshold(make, RULES[name], metrics)


def test_stop_words_need_two_distinct() -> None:
    rule = RULES["stop_words"]
    one = "Lanterns glow " * 30 + "the"
    assert rule.fails(metrics(one)["stop_words"])
    assert not rule.fails(metrics(one + " and")["stop_words"])


def test_ellipsis_character_counts_like_three_dots() -> None:
    assert metrics("wait… wait... go")["ellipsis_per_word"] == pytest.approx(2 / 5)


def test_duplicate_ngrams_count_non_overlapping_repeats() -> None:
    words = ["a1", "b1", "c1", "d1", "e1"] * 3
    text = " ".join(words)
    # the first occurrence is unique; the next two (10 words, 20 chars) are duplicates
    assert metrics(text)["dup_5_gram_char_fraction"] == pytest.approx(20 / len(text))


def test_stop_words_are_case_sensitive() -> None:
    # datatrove intersects the raw tokens with the lower-case stop words
    assert metrics("The cat And the dog")["stop_words"] == 1
    assert metrics("the cat and the dog")["stop_words"] == 2


def test_top_ngram_chars_include_joining_spaces() -> None:
    text = "red kite red kite blue"
    # "red kite" (8 chars with its space) occurs twice
    assert metrics(text)["top_2_gram_char_fraction"] == pytest.approx(16 / len(text))
