"""Text normalisation shared by exact and fuzzy dedup, and UTF-8 buffers for the kernels.

Exact-dedup normal form: Unicode NFC, then every run of whitespace (``str.isspace``) becomes
one space, with none at either end: ``" ".join(unicodedata.normalize("NFC", t).split())``.

Fuzzy-dedup words: the NFC text, lowercased, split into maximal runs of alphanumeric
characters (``str.isalnum``); everything else (punctuation, symbols, whitespace, ``_``) only
separates words. The Python functions below are the reference; the compiled kernels walk the
UTF-8 bytes with lookup tables built from the same ``str`` predicates, so both agree.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TABLE_SIZE = 0x30000  # planes 0-2 hold every cased, alphanumeric or space code point we use
_WORD = re.compile(r"[^\W_]+")


def normalize_exact(text: str) -> str:
    """The exact-dedup normal form of one text (reference implementation)."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def fuzzy_words(text: str) -> list[str]:
    """The fuzzy-dedup words of one text (reference implementation)."""
    lowered = "".join(_lower_char(c) for c in unicodedata.normalize("NFC", text))
    return _WORD.findall(lowered)


def _lower_char(char: str) -> str:
    """Simple (one-to-one) lowercase mapping, as the kernels apply it."""
    low = char.lower()
    return low if len(low) == 1 else char


@cache
def codepoint_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(is_alnum, is_space, lowercase) per code point below :data:`TABLE_SIZE`."""
    chars = [chr(c) for c in range(TABLE_SIZE)]
    alnum = np.fromiter((c.isalnum() for c in chars), dtype=np.bool_, count=TABLE_SIZE)
    space = np.fromiter((c.isspace() for c in chars), dtype=np.bool_, count=TABLE_SIZE)
    lower = np.fromiter((ord(_lower_char(c)) for c in chars), dtype=np.int32, count=TABLE_SIZE)
    return alnum, space, lower


def as_text_array(texts: pa.Array | pa.ChunkedArray | list[str]) -> pa.LargeStringArray:
    """Texts as one NFC-normalised large_string array (only non-ASCII texts are touched)."""
    if isinstance(texts, list):
        arr = pa.array(texts, type=pa.large_string())
    else:
        if isinstance(texts, pa.ChunkedArray):
            texts = texts.combine_chunks()
        arr = texts.cast(pa.large_string())
    non_ascii = pc.invert(pc.string_is_ascii(arr))
    if pc.any(non_ascii).as_py():
        picked = pc.filter(arr, non_ascii).to_pylist()
        fixed = [t if unicodedata.is_normalized("NFC", t) else unicodedata.normalize("NFC", t)
                 for t in picked]
        if any(a is not b for a, b in zip(picked, fixed, strict=True)):
            arr = pc.replace_with_mask(arr, non_ascii, pa.array(fixed, pa.large_string()))
    return arr


def utf8_buffers(arr: pa.StringArray | pa.LargeStringArray) -> tuple[np.ndarray, np.ndarray]:
    """(bytes as uint8, int64 offsets of len(arr) + 1) of a string array; the bytes uncopied."""
    _, offsets_buf, data_buf = arr.buffers()
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(offsets_buf, dtype=width)[arr.offset : arr.offset + len(arr) + 1]
    offsets = offsets.astype(np.int64, copy=False)
    data = (
        np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    )
    return data, offsets
