"""CCNet normalization."""

from __future__ import annotations

from llmstack_dagster.core.curation.quality.normalize import (
    normalize_document,
    normalize_line,
    normalized_lines,
)


def test_normalize_line() -> None:
    assert normalize_line("  Café Naïve 2024 “quoted”…\x07 ") == 'cafe naive 0000 "quoted"...'
    assert normalize_line("ＡＢＣ，１２") == "ａｂｃ,00"
    assert normalize_line("   ") == ""


def test_normalized_lines_drop_blank_lines() -> None:
    assert normalized_lines("One 1\n\n  \nTWO") == ["one 0", "two"]


def test_normalize_document_joins_lines_like_ccnet() -> None:
    # cc_net's text_normalizer removes newlines and tabs (non-printing) without a space
    assert normalize_document("Line One 12.\n\nCafé\tTwo\r\n") == "line one 00.cafetwo"
    assert normalize_document(" \n \n") == ""
