"""CCNet text normalization, applied before SentencePiece and KenLM (Wenzek et al. 2020).

Per line: lowercase, strip accents, map every digit to 0, unify Unicode punctuation to ASCII,
drop non-printing characters.
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


def _strip_accents(line: str) -> str:
    decomposed = unicodedata.normalize("NFD", line)
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn")


def _is_printing(char: str) -> bool:
    return not unicodedata.category(char).startswith("C")


def normalize_line(line: str) -> str:
    """CCNet-normalize one line (no newlines inside); returns '' for blank lines."""
    line = line.strip().lower()
    if not line:
        return ""
    if not line.isascii():
        line = _strip_accents(line).translate(_PUNCT_TABLE)
        line = "".join(c for c in line if _is_printing(c))
    elif not line.isprintable():
        line = "".join(c for c in line if c.isprintable())
    return _DIGITS.sub("0", line).strip()


def normalized_lines(text: str) -> list[str]:
    """The non-empty normalized lines of a document (CCNet scores paragraphs = lines)."""
    return [n for n in (normalize_line(line) for line in text.split("\n")) if n]
