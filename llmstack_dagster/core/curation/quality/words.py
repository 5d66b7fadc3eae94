"""Word, line and paragraph splitting shared by the heuristics.

``gopher_words`` approximates spaCy's blank English tokenizer (the one datatrove's Gopher filters
use) with one regex: URLs and words with inner apostrophes, dots, commas, colons or slashes stay
whole, every other punctuation character is a token of its own, runs of dots are one token.
It is measured against spaCy in ``bench/quality.py``.
"""

from __future__ import annotations

import re

_WORD = re.compile(
    r"https?://\S+[^\s.,;:!?)\]'\"]"  # URL, trailing punctuation split off
    r"|\w+(?:['’.,:/@]\w+|-\d+)*"  # word, number, range, abbreviation, e-mail
    r"|\.{2,}|-{2,}|/{2,}|~{2,}|\*{2,}|={2,}|_{2,}"  # ellipsis and rule-like runs
    r"|[^\w\s]"  # any other punctuation, one character at a time
)
_LINES = re.compile(r"\n+")
_PARAGRAPHS = re.compile(r"\n{2,}")


def gopher_words(text: str) -> list[str]:
    """Word and punctuation tokens, as Gopher-style filters count them."""
    return _WORD.findall(text)


def whitespace_words(text: str) -> list[str]:
    """Whitespace-separated words, as NeMo Curator's English word splitter counts them."""
    return text.split()


def repetition_lines(text: str) -> list[str]:
    """Lines split on runs of newlines (Gopher repetition)."""
    return _LINES.split(text)


def paragraphs(text: str) -> list[str]:
    """Paragraphs split on blank lines (Gopher repetition)."""
    return _PARAGRAPHS.split(text.strip())
