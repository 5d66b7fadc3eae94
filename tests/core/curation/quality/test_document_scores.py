"""Bad input gets a reason, never a crash."""

from __future__ import annotations

import os

import pytest

from llmstack_dagster.core.curation.quality.document_scores import input_issue

MAX = 1_000_000


@pytest.mark.parametrize(
    ("text", "issue"),
    [
        ("", "empty"),
        (" \n\t ", "empty"),
        ("word " * 2_100_000, "too_long"),  # a 10 MB document
        (os.urandom(4096).decode("utf-8", errors="replace"), "binary"),
        ("\x00\x01\x02 abc \x03\x04" * 50, "binary"),
        ("A normal sentence.\nWith\ttabs and lines.", None),
    ],
)
def test_input_issue(text: str, issue: str | None) -> None:
    assert input_issue(text, MAX) == issue
