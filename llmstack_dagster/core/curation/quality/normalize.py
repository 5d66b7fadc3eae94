"""CCNet text normalization, applied before SentencePiece and KenLM (Wenzek et al. 2020).

Lowercase, strip accents, map every digit to 0, unify Unicode punctuation to ASCII, drop
non-printing characters. CCNet's released pipeline normalizes the whole document, so its
newlines (non-printing) vanish and the lines run together (:func:`normalize_document`); line
scoring normalizes each line (:func:`normalized_lines`).
"""

from __future__ import annotations

import re
import unicodedata

_DIGITS = re.compile(r"\d")
_PUNCT = {
    "，": ",", "。": ". ", "、": ",", "„": '"', "”": '"', "“": '"', "«": '"', "»": '"',
    "《": '"', "》": '"', "「": '"', "」": '"', "『": '"', "』": '"', "〈": '"', "〉": '"',
    "‘": "'", "’": "'", "‚": "'", "´": "'", "`": "'", "∶": ":", "：": ":", "？": "?",
    "！": "!", "（": "(", "）": ")", "；": ";", "–": "-", "—": " - ", "―": "-", "－": "-",
    "．": ". ", "～": "~", "…": "...", "━": "-", "【": "[", "】": "]", "％": "%", "►": "-",
    "•": "-", "·": "-",
}  # fmt: skip
_PUNCT_TABLE = str.maketrans(_PUNCT)


class _DropCategories(dict):
    """A ``str.translate`` table deleting the characters whose Unicode category starts with
    ``prefix``; each code point is looked up once (speed: the stage's hot spot)."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def __missing__(self, code: int) -> int | None:
        keep = not unicodedata.category(chr(code)).startswith(self.prefix)
        self[code] = code if keep else None
        return self[code]


_DROP_MARKS = _DropCategories("Mn")
_DROP_NON_PRINTING = _DropCategories("C")


def _strip_accents(line: str) -> str:
    return unicodedata.normalize("NFD", line).translate(_DROP_MARKS)


def normalize_line(line: str) -> str:
    """CCNet-normalize one line (no newlines inside); returns '' for blank lines."""
    line = line.strip().lower()
    if not line:
        return ""
    if not line.isascii():
        line = _strip_accents(line).translate(_PUNCT_TABLE)
        line = line.translate(_DROP_NON_PRINTING)
    elif not line.isprintable():
        line = "".join(c for c in line if c.isprintable())
    return _DIGITS.sub("0", line).strip()


def normalize_document(text: str) -> str:
    """The whole document as CCNet's released pipeline normalizes it: one line, the newlines
    (non-printing characters) removed without a space, as ``text_normalizer.normalize`` does."""
    return normalize_line(text)


def normalized_lines(text: str) -> list[str]:
    """The non-empty normalized lines of a document (CCNet scores paragraphs = lines)."""
    return [n for n in (normalize_line(line) for line in text.split("\n")) if n]
