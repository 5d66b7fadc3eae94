"""Gopher quality and repetition metrics (Rae et al. 2021, table A1), counted the way datatrove's
``GopherQualityFilter`` / ``GopherRepetitionFilter`` count them so decisions agree.

For speed, n-grams are compared by a 64-bit polynomial hash of the words' string hashes
(wrapping arithmetic) instead of tuples of strings; two different n-grams of one document share
a hash with probability about (n-grams)^2 / 2^64. All n-gram counts of a document are one call
of a numba-compiled function (a hash table per n; none of length n + 1 repeats when none of
length n does), ~9x faster than numpy calls per n on documents of a few hundred words.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from itertools import accumulate, compress

import numba
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


@lru_cache(maxsize=1 << 16)
def _has_letter(word: str) -> bool:
    """Whether any character of ``word`` is alphabetic (Gopher's "alphabetic word")."""
    return word.isalpha() or any(c.isalpha() for c in word)


def quality_metrics(text: str, words: list[str]) -> dict[str, float | None]:
    """Gopher quality metrics; ``words`` are :func:`gopher_words` of ``text``."""
    n_words = len(words)
    lines = text.splitlines() or [""]
    if not n_words:
        return dict.fromkeys(QUALITY_METRICS)
    ellipses = sum(text.count(e) for e in ELLIPSES)
    counts = Counter(words)
    bullets = any(b in text for b in BULLETS)
    return {
        "hash_per_word": text.count("#") / n_words,
        "ellipsis_per_word": ellipses / n_words,
        "bullet_lines_fraction": sum(ln.lstrip().startswith(BULLETS) for ln in lines) / len(lines)
        if bullets else 0.0,
        "ellipsis_lines_fraction": sum(ln.rstrip().endswith(ELLIPSES) for ln in lines) / len(lines)
        if ellipses else 0.0,
        "alpha_words_fraction": sum(compress(counts.values(), map(_has_letter, counts)))
        / n_words,
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


@numba.njit(cache=True)
def _ngram_char_counts(ids: np.ndarray, prefix: np.ndarray) -> np.ndarray:
    """Characters of the top n-gram (n in TOP_NGRAMS) and of duplicated n-grams (n in
    DUP_NGRAMS), in that order, from the words' hashes and their cumulative lengths.

    Top: all occurrences of the most frequent n-gram (the earliest among ties, as
    ``Counter.most_common``), with joining spaces. Duplicated: left to right, an n-gram equal to
    an earlier, counted one adds its characters (no spaces) and the next n - 1 positions are
    skipped. n-grams are compared by a polynomial hash of the word hashes (wrapping uint64),
    grouped in an open-addressing table; groups are numbered in order of first occurrence."""
    n_top = len(TOP_NGRAMS)
    out = np.zeros(n_top + len(DUP_NGRAMS), dtype=np.int64)
    bits = 1
    while (1 << bits) < 2 * len(ids):
        bits += 1
    slots = np.empty(1 << bits, dtype=np.int64)
    group_key = np.empty(len(ids), dtype=np.uint64)
    group_size = np.empty(len(ids), dtype=np.int64)
    group_first = np.empty(len(ids), dtype=np.int64)
    group_of = np.empty(len(ids), dtype=np.int64)
    seen = np.empty(len(ids), dtype=np.bool_)
    mask = (1 << bits) - 1
    keys = ids.copy()
    repeats = True
    for n in range(2, DUP_NGRAMS[-1] + 1):
        m = len(ids) - n + 1
        if m <= 0 or not repeats:
            break
        keys = keys[:m] * _HASH_BASE + ids[n - 1 :]
        slots[:] = -1
        groups = 0
        for i in range(m):
            slot = np.int64((keys[i] * _HASH_BASE) >> np.uint64(64 - bits))
            while slots[slot] >= 0 and group_key[slots[slot]] != keys[i]:
                slot = (slot + 1) & mask
            if slots[slot] < 0:
                slots[slot] = groups
                group_key[groups], group_size[groups], group_first[groups] = keys[i], 0, i
                groups += 1
            group_of[i] = slots[slot]
            group_size[slots[slot]] += 1
        if n <= TOP_NGRAMS[-1]:
            top = np.argmax(group_size[:groups])  # the first maximum: the earliest n-gram
            start = group_first[top]
            span = prefix[start + n] - prefix[start] + n - 1
            out[n - TOP_NGRAMS[0]] = span * group_size[top]
        if n >= DUP_NGRAMS[0]:
            repeats = groups < m
            seen[:groups] = False
            chars, free_from = 0, 0
            for i in range(m):
                group = group_of[i]
                if group_size[group] < 2 or i < free_from:
                    continue
                if seen[group]:
                    chars += prefix[i + n] - prefix[i]
                    free_from = i + n
                else:
                    seen[group] = True
            out[n_top + n - DUP_NGRAMS[0]] = chars
    return out


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
    counts = _ngram_char_counts(_word_hashes(words), prefix).tolist()
    names = [*(f"top_{n}_gram" for n in TOP_NGRAMS), *(f"dup_{n}_gram" for n in DUP_NGRAMS)]
    out.update(
        {f"{name}_char_fraction": c / n_chars for name, c in zip(names, counts, strict=True)}
    )
    return out
