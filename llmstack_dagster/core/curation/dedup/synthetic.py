"""Near-duplicate test sets with known edits, built from real text (tests and benchmark).

Edits follow what near-duplicates look like on the web: words replaced, boilerplate
inserted or removed, paragraphs reordered. The truth for each pair is its exact shingle
Jaccard under the dedup config, which is what MinHash estimates.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

BOILERPLATE = [
    "Subscribe to our newsletter to get the latest stories delivered to your inbox every day.",
    "Click here to read more articles like this one and share them with your friends online.",
    "All rights reserved. This material may not be published, broadcast or redistributed.",
    "Advertisement. Continue reading the main story below this message from our sponsors.",
    "Cookies help us deliver our services. By using our services you agree to our use of them.",
]

_SOURCES = [
    "pretrain/news/cnn_dailymail.jsonl",
    "pretrain/news/xsum.jsonl",
    "pretrain/wiki/wiki_bio.jsonl",
    "pretrain/mixed/pile_sample.jsonl",
    "pretrain/web/cc_en_head-0091.jsonl",
    "pretrain/web/cc_en_head-0174.jsonl",
]


def load_texts(shared_data: Path, min_words: int = 0) -> list[str]:
    """Real documents from the shared sample data (JSONL ``text``/``contents`` fields)."""
    texts = []
    for rel in _SOURCES:
        with open(shared_data / rel, encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                text = row.get("text") or row.get("contents") or ""
                if len(text.split()) >= min_words:
                    texts.append(text)
    return texts


def paragraphs(text: str, rng: np.random.Generator, sentences: int = 4) -> list[str]:
    """The text's paragraphs; a text with one paragraph is cut every few sentences."""
    parts = [p for p in text.split("\n") if p.strip()]
    if len(parts) > 1:
        return parts
    pieces = text.split(". ")
    size = max(1, int(rng.integers(2, sentences + 1)))
    return [". ".join(pieces[i : i + size]) for i in range(0, len(pieces), size)]


def edit(text: str, rng: np.random.Generator, vocabulary: list[str], strength: float) -> str:
    """A near-duplicate of ``text``: ``strength`` (0..1) scales how much is changed."""
    paras = paragraphs(text, rng)
    kind = rng.integers(3)
    if kind == 0 or len(paras) < 2:  # replace a share of the words
        words = text.split(" ")
        picks = rng.random(len(words)) < strength * 0.12
        for i in np.flatnonzero(picks):
            words[i] = vocabulary[int(rng.integers(len(vocabulary)))]
        return " ".join(words)
    if kind == 1:  # insert boilerplate and drop a paragraph now and then
        out = list(paras)
        for _ in range(1 + int(strength * 4)):
            out.insert(int(rng.integers(len(out) + 1)), BOILERPLATE[int(rng.integers(5))])
        if strength > 0.5 and len(out) > 3:
            out.pop(int(rng.integers(len(out))))
        return "\n".join(out)
    out = list(paras)  # reorder paragraphs
    for _ in range(1 + int(strength * len(out))):
        i, j = rng.integers(len(out), size=2)
        out[i], out[j] = out[j], out[i]
    return "\n".join(out)
