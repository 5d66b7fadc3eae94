"""The rendered preference dataset the reward-model and DPO tasks train on: one folder,
written by ``preference_dataset``.

Layout::

    index.json                       PreferenceIndex (written last)
    tokenizer.json                   the tokenizer (and tokenizer_config.json for HF ones)
    train/part-00000.parquet         one row per pair: id, prompt_ids, chosen_ids, rejected_ids
    val/part-00000.parquet           the held-out pairs
    pairs/part-00000.parquet         the pairs as text (PAIR_TEXT_SCHEMA), both splits

``prompt_ids`` are the rendered shared prompt up to and including the assistant's cue (the
chat template's generation prompt); ``chosen_ids`` / ``rejected_ids`` are the rendered final
assistant reply, its end-of-turn token included, so ``prompt_ids + chosen_ids`` is the whole
rendered conversation. A pair's sequence never exceeds ``max_len`` tokens: the prompt keeps its
last ``max_prompt_len`` tokens at most, and a reply that would still not fit is quarantined.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, Field

from llmstack_dagster.core.chat.conversation import TURN_TYPE

PREFERENCE_INDEX_FILE = "index.json"
PAIR_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("prompt_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("chosen_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("rejected_ids", pa.list_(pa.int32()), nullable=False),
    ]
)
PAIR_TEXT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("prompt", pa.list_(TURN_TYPE), nullable=False),  # every turn before the reply
        pa.field("chosen", pa.string(), nullable=False),
        pa.field("rejected", pa.string(), nullable=False),
    ]
)


class PreferenceShard(BaseModel):
    path: str  # relative to the dataset folder
    split: Literal["train", "val"]
    rows: int


class PreferenceIndex(BaseModel):
    vocab_size: int
    eos_id: int
    pad_id: int
    end_turn_id: int
    tokenizer_file: str = "tokenizer.json"
    tokenizer_hash: str
    template: str = Field(description="the chat template the pairs were rendered with")
    data_version: str | None = None
    max_len: int = Field(description="no prompt + reply is longer")
    max_prompt_len: int
    shards: list[PreferenceShard] = Field(default_factory=list)

    def split_shards(self, split: str) -> list[PreferenceShard]:
        return [s for s in self.shards if s.split == split]


def load_preference_index(data_dir: Path) -> PreferenceIndex:
    return PreferenceIndex.model_validate_json(
        (Path(data_dir) / PREFERENCE_INDEX_FILE).read_text()
    )
