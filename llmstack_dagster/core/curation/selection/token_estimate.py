"""Token counts before the real tokenizer exists.

Default: UTF-8 bytes / 4 (about 4 bytes per token for English BPE vocabularies of 32k-100k,
e.g. OpenAI's "1 token ≈ 4 characters" rule of thumb). Alternative: whitespace words x 1.3
(≈ 0.75 words per token). Pass ``counter`` (texts -> token counts) to use a real tokenizer.
Every document counts at least one token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field

TokenCounter = Callable[[list[str]], Sequence[int]]


class TokenEstimatorConfig(BaseModel):
    method: Literal["bytes", "words"] = "bytes"
    bytes_per_token: float = Field(4.0, gt=0.0)
    tokens_per_word: float = Field(1.3, gt=0.0)

    def describe(self, counter: TokenCounter | None = None) -> str:
        if counter is not None:
            return f"tokenizer:{getattr(counter, '__name__', type(counter).__name__)}"
        if self.method == "bytes":
            return f"utf8_bytes/{self.bytes_per_token:g}"
        return f"whitespace_words*{self.tokens_per_word:g}"


def estimate_tokens(
    texts: pa.Array | pa.ChunkedArray,
    config: TokenEstimatorConfig,
    counter: TokenCounter | None = None,
) -> np.ndarray:
    """Token count per text (int64, >= 1)."""
    if counter is not None:
        counts = np.asarray(counter(texts.to_pylist()), dtype=np.float64)
    elif config.method == "bytes":
        counts = pc.binary_length(texts).to_numpy(zero_copy_only=False) / config.bytes_per_token
    else:
        words = pc.list_value_length(pc.utf8_split_whitespace(texts))
        counts = words.to_numpy(zero_copy_only=False) * config.tokens_per_word
    return np.maximum(np.ceil(counts), 1).astype(np.int64)
