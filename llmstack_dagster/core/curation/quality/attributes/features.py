"""Document features for the attribute classifiers, computed once per batch and shared.

``hashed``: word unigrams and bigrams of the lower-cased first :data:`HASHED_MAX_CHARS`
characters, hashed into 2**18 buckets (scikit-learn's ``HashingVectorizer``, no vocabulary to
store), L2-normalized; the fast CPU default. ``embeddings``: one sentence embedding per document
(MiniLM by default), read by every attribute that uses them, so a batch is embedded once.
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.feature_extraction.text import HashingVectorizer

from llmstack_dagster.core.curation.quality.attributes.embeddings import EmbeddingConfig, embed

FeatureKind = Literal["hashed", "minilm"]
HASHED_MAX_CHARS = 2000
HASHED_NGRAMS = HashingVectorizer(
    n_features=2**18, ngram_range=(1, 2), alternate_sign=False, norm="l2", lowercase=True
)


def hashed_ngrams(texts: list[str]) -> csr_matrix:
    """Hashed word 1-2-gram features (n, 2**18) of the start of each text."""
    return HASHED_NGRAMS.transform([t[:HASHED_MAX_CHARS] for t in texts])


class DocumentFeatures:
    """The texts of one batch and their features, each kind computed at most once."""

    def __init__(self, texts: list[str], embedding: EmbeddingConfig | None = None) -> None:
        self.texts = texts
        self.embedding = embedding or EmbeddingConfig()

    @cached_property
    def hashed(self) -> csr_matrix:
        return hashed_ngrams(self.texts)

    @cached_property
    def embeddings(self) -> np.ndarray:
        return embed(self.texts, self.embedding)

    def of_kind(self, kind: FeatureKind) -> csr_matrix | np.ndarray:
        return self.hashed if kind == "hashed" else self.embeddings
