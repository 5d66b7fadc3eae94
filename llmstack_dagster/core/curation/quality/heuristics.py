"""NeMo Curator's document heuristics with the seed thresholds (definitions in
``references/quality-heuristics.md``): non-alphanumeric, digit and URL character fractions,
whitespace word count and mean word length."""

from __future__ import annotations

import re

from pydantic import BaseModel

from llmstack_dagster.core.curation.quality.rules import Rule
from llmstack_dagster.core.curation.quality.words import whitespace_words

# NeMo counts ASCII letters, digits, newlines and ?!,. as "alphanumeric" (spaces do not count);
# the other characters, usually the fewer, are the ones counted.
_NON_ALNUM = re.compile(r"[^a-zA-Z0-9\n?!,.]")
_DIGIT = re.compile(r"\d")
_ALNUM_BYTES = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\n?!,."
_URL = re.compile(r"https?://(?:[a-zA-Z0-9$\-_@.&+!*(),]|%[0-9a-fA-F]{2})+")

METRICS = (
    "non_alnum_fraction",
    "digit_fraction",
    "url_fraction",
    "word_count",
    "mean_word_length",
)


class HeuristicsConfig(BaseModel):
    """Seed thresholds (issue 4; NeMo Curator defaults)."""

    max_non_alnum_fraction: float = 0.25
    max_digit_fraction: float = 0.15
    max_url_fraction: float = 0.20
    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0

    def rules(self) -> list[Rule]:
        return [
            Rule(name="non_alnum_fraction", metric="non_alnum_fraction",
                 max=self.max_non_alnum_fraction),
            Rule(name="digit_fraction", metric="digit_fraction", max=self.max_digit_fraction),
            Rule(name="url_fraction", metric="url_fraction", max=self.max_url_fraction),
            Rule(name="word_count", metric="word_count", min=self.min_words, max=self.max_words),
            Rule(name="mean_word_length", metric="mean_word_length",
                 min=self.min_mean_word_length, max=self.max_mean_word_length),
        ]  # fmt: skip


def _non_alnum_and_digits(text: str) -> tuple[int, int]:
    """Characters outside NeMo's alphanumeric set, and digits; byte deletion for ASCII text."""
    if text.isascii():
        data = text.encode("ascii")
        return len(data.translate(None, _ALNUM_BYTES)), len(data) - len(
            data.translate(None, b"0123456789")
        )
    return len(_NON_ALNUM.findall(text)), len(_DIGIT.findall(text))


def heuristic_metrics(text: str) -> dict[str, float | None]:
    """The five NeMo metrics of a non-empty document."""
    n_chars = len(text)
    words = whitespace_words(text)
    url_chars = sum(len(url) for url in _URL.findall(text)) if "://" in text else 0
    non_alnum, digits = _non_alnum_and_digits(text)
    return {
        "non_alnum_fraction": non_alnum / n_chars,
        "digit_fraction": digits / n_chars,
        "url_fraction": url_chars / n_chars,
        "word_count": float(len(words)),
        "mean_word_length": sum(map(len, words)) / len(words) if words else None,
    }
