"""CCNet text normalization, applied before SentencePiece and KenLM (Wenzek et al. 2020).

Lowercase, strip accents, map every digit to 0, unify Unicode punctuation to ASCII, drop
non-printing characters. CCNet's released pipeline normalizes the whole document, so its
newlines (non-printing) vanish and the lines run together (:func:`normalize_document`); line
scoring normalizes each line (:func:`normalized_lines`).
"""

from __future__ import annotations

import unicodedata

_PUNCT = {
    "，": ",", "。": ". ", "、": ",", "„": '"', "”": '"', "“": '"', "«": '"', "»": '"',
    "《": '"', "》": '"', "「": '"', "」": '"', "『": '"', "』": '"', "〈": '"', "〉": '"',
    "‘": "'", "’": "'", "‚": "'", "´": "'", "`": "'", "∶": ":", "：": ":", "？": "?",
    "！": "!", "（": "(", "）": ")", "；": ";", "–": "-", "—": " - ", "―": "-", "－": "-",
    "．": ". ", "～": "~", "…": "...", "━": "-", "【": "[", "】": "]", "％": "%", "►": "-",
    "•": "-", "·": "-",
}  # fmt: skip
_ASCII_TABLE = str.maketrans(
    {**dict.fromkeys(map(chr, [*range(32), 127])), **{str(d): "0" for d in range(10)}}
)  # ASCII control characters (not printable) dropped, digits to 0


class _Table(dict):
    """The ``str.translate`` table of one pass over decomposed (NFD) text: combining marks
    (accents) and non-printing characters (category C) dropped, punctuation unified, decimal
    digits (``\\d``) to 0; each code point is classified once (speed: the stage's hot spot)."""

    def __missing__(self, code: int) -> str | None:
        char = chr(code)
        category = unicodedata.category(char)
        if category == "Mn" or (category.startswith("C") and char not in _PUNCT):
            value = None
        else:
            value = _PUNCT.get(char, "0" if char.isdecimal() else char)
        self[code] = value
        return value


_TABLE = _Table()


def normalize_line(line: str) -> str:
    """CCNet-normalize one line (no newlines inside); returns '' for blank lines."""
    line = line.strip().lower()
    if line.isascii():
        return line.translate(_ASCII_TABLE).strip()
    return unicodedata.normalize("NFD", line).translate(_TABLE).strip()


def normalize_document(text: str) -> str:
    """The whole document as CCNet's released pipeline normalizes it: one line, the newlines
    (non-printing characters) removed without a space, as ``text_normalizer.normalize`` does."""
    return normalize_line(text)


def normalized_lines(text: str) -> list[str]:
    """The non-empty normalized lines of a document (CCNet scores paragraphs = lines)."""
    return [n for n in (normalize_line(line) for line in text.split("\n")) if n]
