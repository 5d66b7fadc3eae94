import unicodedata

import xxhash

from llmstack_dagster.core.curation.dedup.exact import exact_hash128, normalized_bytes
from llmstack_dagster.core.curation.dedup.text import fuzzy_words, normalize_exact

SAMPLES = [
    "  Hello,\t world!\n\nSecond\u00a0line\u2003here  ",
    "Cafe\u0301 au lait \u2014 d\u00e9j\u00e0 vu",  # decomposed e + acute, em dash
    "",
    "   \n\t ",
    "snake_case and CamelCase; ÄÖÜ straße \u3000 日本語 テキスト",
    "emoji \U0001f600 between words\x1cand separators\r\n",
]


def test_normalize_exact_is_nfc_and_single_spaces() -> None:
    assert normalize_exact(SAMPLES[0]) == "Hello, world! Second line here"
    assert normalize_exact(SAMPLES[1]) == unicodedata.normalize("NFC", "Café au lait — déjà vu")
    assert normalize_exact(SAMPLES[3]) == ""


def test_kernel_normal_form_matches_reference() -> None:
    blob, offsets = normalized_bytes(SAMPLES)
    got = [blob[s:e].decode() for s, e in zip(offsets[:-1], offsets[1:], strict=True)]
    assert got == [normalize_exact(t) for t in SAMPLES]


def test_exact_hash_is_xxh3_128_of_normal_form() -> None:
    hashes = exact_hash128(SAMPLES)
    for text, (hi, lo) in zip(SAMPLES, hashes, strict=True):
        digest = xxhash.xxh3_128_intdigest(normalize_exact(text).encode())
        assert (int(hi) << 64) | int(lo) == digest


def test_exact_hash_ignores_whitespace_and_composition_only() -> None:
    h = exact_hash128(["a  b\nc", "a b c", "a b  C", "\u00e9", "e\u0301"])
    assert (h[0] == h[1]).all()
    assert not (h[1] == h[2]).all()
    assert (h[3] == h[4]).all()


def test_fuzzy_words_lowercase_and_strip_punctuation() -> None:
    assert fuzzy_words("Don't STOP--me_now, 2 times!") == [
        "don",
        "t",
        "stop",
        "me",
        "now",
        "2",
        "times",
    ]
    assert fuzzy_words(SAMPLES[1]) == ["café", "au", "lait", "déjà", "vu"]
