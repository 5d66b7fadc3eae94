"""Gopher quality and repetition metrics (Rae et al. 2021, table A1), counted the way datatrove's
``GopherQualityFilter`` / ``GopherRepetitionFilter`` count them so decisions agree.

For speed, n-grams are compared by a 64-bit polynomial hash of the words' string hashes (numpy,
wrapping arithmetic) instead of tuples of strings; two different n-grams of one document share a
hash with probability about (n-grams)^2 / 2^64. Only n-grams that occur more than once are
walked in Python, and none of length n + 1 repeats when none of length n does.
"""

from __future__ import annotations

from collections import Counter
from itertools import accumulate

import numpy as np
from pydantic import BaseModel

from llmstack_dagster.core.curation.quality.rules import Rule
from llmstack_dagster.core.curation.quality.words import (
    paragraphs,
    repetition_lines,
)

STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
BULLETS = ("•", "-", "‣", "◦", "●", "○", "∙", "⁃")
ELLIPSES = ("...", "…")
TOP_NGRAMS = (2, 3, 4)
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)
_HASH_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier (golden-ratio constant)

QUALITY_METRICS = (
    "hash_per_word",
    "ellipsis_per_word",
    "bullet_lines_fraction",
    "ellipsis_lines_fraction",
    "alpha_words_fraction",
    "stop_words",
)
REPETITION_METRICS = (
    "dup_para_fraction",
    "dup_para_char_fraction",
    "dup_line_fraction",
    "dup_line_char_fraction",
    *(f"top_{n}_gram_char_fraction" for n in TOP_NGRAMS),
    *(f"dup_{n}_gram_char_fraction" for n in DUP_NGRAMS),
)


class GopherConfig(BaseModel):
    """Gopher thresholds (Rae et al. 2021, appendix A.1.1 and table A1)."""

    max_symbol_per_word: float = 0.1
    max_bullet_lines_fraction: float = 0.9
    max_ellipsis_lines_fraction: float = 0.3
    min_alpha_words_fraction: float = 0.8
    min_stop_words: int = 2
    max_dup_line_fraction: float = 0.3
    max_dup_para_fraction: float = 0.3
    max_dup_line_char_fraction: float = 0.2
    max_dup_para_char_fraction: float = 0.2
    max_top_ngram_char_fraction: dict[int, float] = {2: 0.20, 3: 0.18, 4: 0.16}
    max_dup_ngram_char_fraction: dict[int, float] = {
        5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10
    }  # fmt: skip

    def quality_rules(self) -> list[Rule]:
        return [
            Rule(name="hash_per_word", metric="hash_per_word", max=self.max_symbol_per_word),
            Rule(name="ellipsis_per_word", metric="ellipsis_per_word",
                 max=self.max_symbol_per_word),
            Rule(name="bullet_lines", metric="bullet_lines_fraction",
                 max=self.max_bullet_lines_fraction),
            Rule(name="ellipsis_lines", metric="ellipsis_lines_fraction",
                 max=self.max_ellipsis_lines_fraction),
            Rule(name="alpha_words", metric="alpha_words_fraction",
                 min=self.min_alpha_words_fraction),
            Rule(name="stop_words", metric="stop_words", min=self.min_stop_words),
        ]  # fmt: skip

    def repetition_rules(self) -> list[Rule]:
        rules = [
            Rule(name="dup_para", metric="dup_para_fraction", max=self.max_dup_para_fraction),
            Rule(name="dup_para_chars", metric="dup_para_char_fraction",
                 max=self.max_dup_para_char_fraction),
            Rule(name="dup_line", metric="dup_line_fraction", max=self.max_dup_line_fraction),
            Rule(name="dup_line_chars", metric="dup_line_char_fraction",
                 max=self.max_dup_line_char_fraction),
        ]  # fmt: skip
        rules += [
            Rule(name=f"top_{n}_gram", metric=f"top_{n}_gram_char_fraction", max=limit)
            for n, limit in sorted(self.max_top_ngram_char_fraction.items())
        ]
        rules += [
            Rule(name=f"dup_{n}_gram", metric=f"dup_{n}_gram_char_fraction", max=limit)
            for n, limit in sorted(self.max_dup_ngram_char_fraction.items())
        ]
        return rules


def quality_metrics(text: str, words: list[str]) -> dict[str, float | None]:
    """Gopher quality metrics; ``words`` are :func:`gopher_words` of ``text``."""
    n_words = len(words)
    lines = text.splitlines() or [""]
    if not n_words:
        return dict.fromkeys(QUALITY_METRICS)
    ellipses = sum(text.count(e) for e in ELLIPSES)
    bullets = any(b in text for b in BULLETS)
    return {
        "hash_per_word": text.count("#") / n_words,
        "ellipsis_per_word": ellipses / n_words,
        "bullet_lines_fraction": sum(ln.lstrip().startswith(BULLETS) for ln in lines) / len(lines)
        if bullets else 0.0,
        "ellipsis_lines_fraction": sum(ln.rstrip().endswith(ELLIPSES) for ln in lines) / len(lines)
        if ellipses else 0.0,
        "alpha_words_fraction": sum(n for w, n in Counter(words).items()
                                    if w.isalpha() or any(c.isalpha() for c in w)) / n_words,
        "stop_words": float(len(STOP_WORDS.intersection(words))),  # case-sensitive, as datatrove
    }


def _duplicates(items: list[str]) -> tuple[int, int]:
    """(number, characters) of items that repeat an earlier item."""
    seen: set[str] = set()
    count = chars = 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        else:
            seen.add(item)
    return count, chars


def _word_hashes(words: list[str]) -> np.ndarray:
    return np.fromiter(map(hash, words), np.int64, len(words)).view(np.uint64)


def _ngram_keys(ids: np.ndarray, max_n: int) -> dict[int, np.ndarray]:
    """n -> hash of the n-gram starting at each position, for n = 1..max_n."""
    keys = {1: ids}
    with np.errstate(over="ignore"):
        for n in range(2, max_n + 1):
            keys[n] = keys[n - 1][:-1] * _HASH_BASE + ids[n - 1 :]
    return keys


def _top_ngram_chars(keys: np.ndarray, prefix: np.ndarray, n: int) -> int:
    """Characters (with joining spaces) covered by all occurrences of the most frequent n-gram,
    the earliest one among ties (as ``Counter.most_common``)."""
    _, first, counts = np.unique(keys, return_index=True, return_counts=True)
    top = counts == counts.max()
    start = int(first[top].min())
    return int(prefix[start + n] - prefix[start] + n - 1) * int(counts.max())


def _repeated_positions(keys: np.ndarray) -> np.ndarray:
    """Sorted positions whose key occurs more than once."""
    order = np.argsort(keys, kind="stable")
    equal = keys[order[1:]] == keys[order[:-1]]
    repeated = np.zeros(len(keys), dtype=bool)
    repeated[1:] |= equal
    repeated[:-1] |= equal
    return np.sort(order[repeated])


def _dup_ngram_chars(
    keys: np.ndarray, repeated: np.ndarray, prefix: np.ndarray, n: int
) -> int:
    """Characters (without spaces) in n-grams that repeat an earlier, non-overlapping n-gram.

    Left to right, an n-gram already seen counts and the next n - 1 positions are skipped
    unseen; positions of n-grams that occur once never matter, so only ``repeated`` ones are
    walked."""
    seen: set[int] = set()
    chars = free_from = 0
    for i, key in zip(repeated.tolist(), keys[repeated].tolist(), strict=True):
        if i < free_from:
            continue
        if key in seen:
            chars += int(prefix[i + n] - prefix[i])
            free_from = i + n
        else:
            seen.add(key)
    return chars


def repetition_metrics(text: str, words: list[str]) -> dict[str, float | None]:
    """Gopher repetition metrics; ``words`` are :func:`gopher_words` of ``text``."""
    n_chars = len(text)
    paras = paragraphs(text)
    lines = repetition_lines(text)
    dup_paras, dup_para_chars = _duplicates(paras)
    dup_lines, dup_line_chars = _duplicates(lines)
    out: dict[str, float | None] = {
        "dup_para_fraction": dup_paras / len(paras),
        "dup_para_char_fraction": dup_para_chars / n_chars,
        "dup_line_fraction": dup_lines / len(lines),
        "dup_line_char_fraction": dup_line_chars / n_chars,
    }
    prefix = np.fromiter(accumulate(map(len, words), initial=0), np.int64, len(words) + 1)
    keys = _ngram_keys(_word_hashes(words), max(DUP_NGRAMS))
    for n in TOP_NGRAMS:
        top = _top_ngram_chars(keys[n], prefix, n) if len(words) >= n else 0
        out[f"top_{n}_gram_char_fraction"] = top / n_chars
    repeated = np.empty(0, dtype=np.int64)
    for n in DUP_NGRAMS:
        if len(words) >= n and (n == DUP_NGRAMS[0] or len(repeated)):
            repeated = _repeated_positions(keys[n])
        else:
            repeated = repeated[:0]
        dup = _dup_ngram_chars(keys[n], repeated, prefix, n) if len(repeated) else 0
        out[f"dup_{n}_gram_char_fraction"] = dup / n_chars
    return out
