"""CCNet normalization."""

from __future__ import annotations

from llmstack_dagster.core.curation.quality.normalize import normalize_line, normalized_lines


def test_normalize_line() -> None:
    assert normalize_line("  Café Naïve 2024 “quoted”…\x07 ") == 'cafe naive 0000 "quoted"...'
    assert normalize_line("ＡＢＣ，１２") == "ａｂｃ,00"
    assert normalize_line("   ") == ""


def test_normalized_lines_drop_blank_lines() -> None:
    assert normalized_lines("One 1\n\n  \nTWO") == ["one 0", "two"]
