"""The hashed n-gram counts of the Gopher repetition metrics equal a direct count over tuples of
words, on real documents."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from quality_data import code_texts, news_texts, web_texts

from llmstack_dagster.core.curation.quality.gopher import (
    DUP_NGRAMS,
    TOP_NGRAMS,
    repetition_metrics,
)
from llmstack_dagster.core.curation.quality.words import gopher_words


def _tuple_top(words: list[str], n: int) -> int:
    grams = list(zip(*(words[k:] for k in range(n)), strict=False))
    gram, count = Counter(grams).most_common(1)[0]
    return (sum(map(len, gram)) + n - 1) * count


def _tuple_dup(words: list[str], n: int) -> int:
    grams = list(zip(*(words[k:] for k in range(n)), strict=False))
    seen: set[tuple[str, ...]] = set()
    chars = i = 0
    while i < len(grams):
        if grams[i] in seen:
            chars += sum(map(len, grams[i]))
            i += n
        else:
            seen.add(grams[i])
            i += 1
    return chars


@pytest.mark.parametrize("kind", ["web", "news", "code"])
def test_hashed_counts_equal_tuple_counts(shared_data: Path, kind: str) -> None:
    texts = {"web": web_texts, "news": news_texts, "code": code_texts}[kind](shared_data)[:60]
    texts.append("a b c d e f a b c d e f a b c d e f g a b c d e f")  # overlapping repeats
    for text in texts:
        words = gopher_words(text)
        got = repetition_metrics(text, words)
        for n in TOP_NGRAMS:
            want = _tuple_top(words, n) if len(words) >= n else 0
            assert got[f"top_{n}_gram_char_fraction"] == want / len(text)
        for n in DUP_NGRAMS:
            assert got[f"dup_{n}_gram_char_fraction"] == _tuple_dup(words, n) / len(text)


def test_short_and_highly_repetitive_documents_equal_tuple_counts() -> None:
    """Ties, overlaps and documents shorter than n, over a three-word vocabulary."""
    rng = random.Random(0)
    for length in [*range(12), *range(12, 200, 7)]:
        words = [rng.choice(("ab", "c", "def")) for _ in range(length)]
        text = " ".join(words) or " "
        got = repetition_metrics(text, words)
        for n in TOP_NGRAMS:
            want = _tuple_top(words, n) if len(words) >= n else 0
            assert got[f"top_{n}_gram_char_fraction"] == want / len(text), (length, n)
        for n in DUP_NGRAMS:
            assert got[f"dup_{n}_gram_char_fraction"] == _tuple_dup(words, n) / len(text)
