"""Attribute features: hashed n-grams, and one sentence embedding per document per batch."""

from __future__ import annotations

import numpy as np
import pytest

from llmstack_dagster.core.curation.quality.attributes import features as features_module
from llmstack_dagster.core.curation.quality.attributes.embeddings import (
    CHARS_PER_TOKEN,
    EmbeddingConfig,
    window_chars,
)
from llmstack_dagster.core.curation.quality.attributes.features import (
    HASHED_MAX_CHARS,
    DocumentFeatures,
    hashed_ngrams,
)


def test_hashed_ngrams_are_unit_rows_of_the_start_of_each_text() -> None:
    head = "The quick brown fox jumps over the lazy dog. " * 60
    x = hashed_ngrams([head[:HASHED_MAX_CHARS], head[:HASHED_MAX_CHARS] + " unseen tail words",
                       "Completely different words here"])  # fmt: skip
    assert x.shape == (3, 2**18)
    np.testing.assert_allclose(np.sqrt(x.multiply(x).sum(axis=1)).A1, 1.0)
    assert (x[0] != x[1]).nnz == 0  # what lies past the cut is not read
    assert x[0].multiply(x[2]).sum() == 0  # no shared n-gram, no shared bucket here


def test_one_embedding_pass_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake_embed(texts: list[str], config: EmbeddingConfig) -> np.ndarray:
        calls.append(len(texts))
        return np.ones((len(texts), 4))

    monkeypatch.setattr(features_module, "embed", fake_embed)
    batch = DocumentFeatures(["a", "b", "c"])
    for _ in range(3):  # quality, domain and anything else that reads them
        assert batch.of_kind("minilm").shape == (3, 4)
    assert calls == [3]


def test_minilm_reads_its_whole_window() -> None:
    """MiniLM reads 256 word pieces; the character cut keeps 8 characters per piece."""
    assert window_chars(EmbeddingConfig()) == 256 * CHARS_PER_TOKEN
