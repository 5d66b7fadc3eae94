"""Gopher quality and repetition metrics (Rae et al. 2021, table A1), counted the way datatrove's
``GopherQualityFilter`` / ``GopherRepetitionFilter`` count them so decisions agree."""

from __future__ import annotations

from collections import Counter
from itertools import accumulate

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
    return {
        "hash_per_word": text.count("#") / n_words,
        "ellipsis_per_word": sum(text.count(e) for e in ELLIPSES) / n_words,
        "bullet_lines_fraction": sum(ln.lstrip().startswith(BULLETS) for ln in lines) / len(lines),
        "ellipsis_lines_fraction": sum(ln.rstrip().endswith(ELLIPSES) for ln in lines) / len(lines),
        "alpha_words_fraction": sum(any(c.isalpha() for c in w) for w in words) / n_words,
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


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return list(zip(*(words[k:] for k in range(n)), strict=False))


def _top_ngram_chars(words: list[str], n: int) -> int:
    """Characters (with joining spaces) covered by all occurrences of the most frequent n-gram."""
    gram, count = Counter(_ngrams(words, n)).most_common(1)[0]
    return (sum(map(len, gram)) + n - 1) * count


def _dup_ngram_chars(words: list[str], prefix: list[int], n: int) -> int:
    """Characters (without spaces) in n-grams that repeat an earlier, non-overlapping n-gram."""
    grams = _ngrams(words, n)
    seen: set[tuple[str, ...]] = set()
    chars = i = 0
    while i < len(grams):
        if grams[i] in seen:
            chars += prefix[i + n] - prefix[i]
            i += n
        else:
            seen.add(grams[i])
            i += 1
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
    for n in TOP_NGRAMS:
        top = _top_ngram_chars(words, n) if len(words) >= n else 0
        out[f"top_{n}_gram_char_fraction"] = top / n_chars
    prefix = list(accumulate(map(len, words), initial=0))
    for n in DUP_NGRAMS:
        out[f"dup_{n}_gram_char_fraction"] = _dup_ngram_chars(words, prefix, n) / n_chars
    return out
