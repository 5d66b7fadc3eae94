import unicodedata

import numpy as np
import pyarrow as pa
import pytest
import xxhash

from llmstack_dagster.core.curation.dedup import exact
from llmstack_dagster.core.curation.dedup.exact import (
    ascii_whitespace_bits,
    exact_flags,
    exact_hash128,
    nfc_stable_table,
    normalized_bytes,
)
from llmstack_dagster.core.curation.dedup.text import normalize_exact

# Texts that are not NFC, or whose characters compose with their neighbour (NFC Quick Check
# No or Maybe): combining accent, Hangul L+V and LV+T jamo, Oriya vowel sign pair (Maybe
# starter), Angstrom sign (singleton), Devanagari QA (composition exclusion).
NOT_NFC = [
    "Cafe\u0301  au lait",
    "\u1100\u1161 x",
    "\uac00\u11a8",
    "\u0b47\u0b3e",
    "\u212b",
    "\u0958",
]
ALPHABET = [" ", "  ", "\n", "\t", "\u00a0", "\u2003", "\x1c", "a", "Zq", "é", "e\u0301", "日本",
            "\U0001f600", "word", "longerword", ".", "\u3000", "\u1161"]


def _reference_hashes(texts: list[str]) -> np.ndarray:
    digests = [xxhash.xxh3_128_intdigest(normalize_exact(t).encode()) for t in texts]
    return np.array([[d >> 64, d & (2**64 - 1)] for d in digests], dtype=np.uint64)


def _random_texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(n):
        picks = rng.choice(len(ALPHABET), size=int(rng.integers(0, 30)))
        texts.append("".join(ALPHABET[i] if rng.random() < 0.5 else "plain" for i in picks))
    return texts


def test_stable_table_marks_composing_and_changing_code_points() -> None:
    stable = nfc_stable_table()
    assert stable[[ord(c) for c in "aZ é日\u00a0\u3000"]].all()
    assert not stable[[0x0301, 0x1161, 0x11A8, 0x0B3E, 0x212B, 0x0958]].any()
    rng = np.random.default_rng(0)
    pool = np.flatnonzero(stable[: 0x3000])
    for _ in range(200):
        text = "".join(chr(c) for c in rng.choice(pool, size=12))
        assert unicodedata.is_normalized("NFC", text)


def test_non_nfc_texts_take_the_reference_path() -> None:
    texts = NOT_NFC + [unicodedata.normalize("NFC", t) for t in NOT_NFC]
    hashes = exact_hash128(texts)
    assert (hashes == _reference_hashes(texts)).all()
    half = len(NOT_NFC)
    assert (hashes[:half] == hashes[half:]).all()
    blob, offsets = normalized_bytes(texts)
    assert blob[offsets[0] : offsets[1]].decode() == "Café au lait"


@pytest.mark.parametrize("block_bytes", [16, 1 << 20])
def test_random_texts_match_reference_at_every_alignment(monkeypatch, block_bytes: int) -> None:
    monkeypatch.setattr(exact, "BLOCK_BYTES", block_bytes)
    texts = _random_texts(600, seed=1) + ["", "   ", "a", "  plain plain  plainplain  "]
    assert (exact_hash128(texts) == _reference_hashes(texts)).all()
    blob, offsets = normalized_bytes(texts)
    got = [blob[s:e].decode() for s, e in zip(offsets[:-1], offsets[1:], strict=True)]
    assert got == [normalize_exact(t) for t in texts]


def test_arrow_inputs_string_large_string_sliced_chunked() -> None:
    texts = _random_texts(200, seed=2)
    expected = _reference_hashes(texts)
    small = pa.array(texts, pa.string())
    chunked = pa.chunked_array([small.slice(0, 70), small.slice(70)])
    for given in (small, small.cast(pa.large_string()), chunked):
        assert (exact_hash128(given) == expected).all()
    assert (exact_hash128(small.slice(33, 50)) == expected[33:83]).all()
    assert exact_hash128([]).shape == (0, 2)


def _long_texts(n: int, seed: int) -> list[str]:
    """Prose-like texts: long runs of single-spaced words, a rare other piece every ~40 words."""
    rng = np.random.default_rng(seed)
    words = ["a", "to", "the", "word", "plain", "longerword", "x.", "(1)"]
    texts = []
    for _ in range(n):
        parts = []
        for _ in range(int(rng.integers(20, 400))):
            parts.append(words[int(rng.integers(len(words)))])
            rare = ALPHABET[int(rng.integers(len(ALPHABET)))]
            parts.append(rare if rng.random() < 0.025 else " ")
        texts.append("".join(parts))
    return texts


@pytest.mark.parametrize("block_bytes", [512, 1 << 20])
def test_long_plain_runs_match_reference_at_every_offset(monkeypatch, block_bytes: int) -> None:
    """Runs of plain words copied whole end exactly where a text or a plain word ends."""
    monkeypatch.setattr(exact, "BLOCK_BYTES", block_bytes)
    texts = _long_texts(300, seed=3)
    expected = _reference_hashes(texts)
    for shift in range(8):  # a first text of `shift` bytes moves all others against the words
        hashes = exact_hash128(["y" * shift, *texts])
        assert (hashes[1:] == expected).all()
    blob, offsets = normalized_bytes(texts)
    got = [blob[s:e].decode() for s, e in zip(offsets[:-1], offsets[1:], strict=True)]
    assert got == [normalize_exact(t) for t in texts]


def test_word_whitespace_test_agrees_with_str_split_on_every_ascii_byte() -> None:
    words = np.arange(128, dtype=np.uint8).view(np.uint64)  # 16 words, every byte once
    marked = [
        bool((int(ascii_whitespace_bits(word)) >> (8 * k + 7)) & 1)
        for word in words
        for k in range(8)
    ]
    assert marked == [chr(b).isspace() for b in range(128)]
    assert marked == [bool(exact_flags()[b] & exact.SPACE) for b in range(128)]
