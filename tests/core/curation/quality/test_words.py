"""``gopher_words`` cuts text where spaCy's blank English tokenizer does (datatrove's Gopher
words); expected tokens were checked against spaCy 3.8."""

from __future__ import annotations

import pytest

from llmstack_dagster.core.curation.quality.words import gopher_words


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("f(x)", ["f(x", ")"]),  # only outer punctuation is peeled; "(" is no infix
        ("x^2", ["x^2"]),  # "^" splits only between digits
        ("1-2 a--b", ["1", "-", "2", "a", "--", "b"]),
        ("a/b a:b", ["a", "/", "b", "a", ":", "b"]),
        ("3.14 10km $5", ["3.14", "10", "km", "$", "5"]),  # units and currency
        ("file.py example.com/a?b=1", ["file.py", "example.com/a?b=1"]),  # URLs stay whole
        ("http://a.b/c).", ["http://a.b", "/", "c", ")", "."]),  # one-letter TLD: no URL
        ("(don't) it's", ["(", "do", "n't", ")", "it", "'s"]),
        ("dont cannot Im its", ["do", "nt", "can", "not", "I", "m", "its"]),
        ("e.g. Mr. U.S. ok.", ["e.g.", "Mr.", "U.S.", "ok", "."]),
        ("at 3pm (a.m.):", ["at", "3", "pm", "(", "a.m.", "):"]),  # special rejoined
        ("p.Name", ["p.", "Name"]),
        ("wait...\n\n  go…", ["wait", "...", "go", "…"]),
    ],
)
def test_tokens_match_spacy(text: str, tokens: list[str]) -> None:
    assert gopher_words(text) == tokens
