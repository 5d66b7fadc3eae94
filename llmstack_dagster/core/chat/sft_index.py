"""The rendered SFT dataset the engine trains on: one folder, written by ``sft_dataset``.

Layout::

    index.json                       SFTIndex (written last)
    tokenizer.json                   the tokenizer (and tokenizer_config.json for HF ones)
    train/part-00000.parquet         one row per conversation: id, input_ids, loss_mask
    val/part-00000.parquet           the held-out conversations

``input_ids`` are the rendered conversation (int32); ``loss_mask`` (int8) is 1 on the tokens
the model learns to produce: every assistant turn's content and its end-of-turn token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, Field

SFT_INDEX_FILE = "index.json"
RENDERED_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("input_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("loss_mask", pa.list_(pa.int8()), nullable=False),
    ]
)


class SFTShard(BaseModel):
    path: str  # relative to the dataset folder
    split: Literal["train", "val"]
    rows: int
    tokens: int
    trained_tokens: int  # tokens with loss_mask 1


class SFTIndex(BaseModel):
    vocab_size: int
    eos_id: int
    pad_id: int  # never eos: an end-of-turn that is padded away is never learned
    tokenizer_file: str = "tokenizer.json"
    tokenizer_hash: str
    data_version: str | None = None
    max_len: int = Field(description="no rendered conversation is longer")
    shards: list[SFTShard] = Field(default_factory=list)

    def split_shards(self, split: str) -> list[SFTShard]:
        return [s for s in self.shards if s.split == split]


def load_sft_index(data_dir: Path) -> SFTIndex:
    return SFTIndex.model_validate_json((Path(data_dir) / SFT_INDEX_FILE).read_text())
