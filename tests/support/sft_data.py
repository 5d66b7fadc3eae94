"""Rendered SFT dataset folders (``core/chat/sft_index.py``) built from given rows."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from llmstack_dagster.core.chat.sft_index import (
    RENDERED_SCHEMA,
    SFT_INDEX_FILE,
    SFTIndex,
    SFTShard,
)
from llmstack_dagster.core.training.tokenizer import load_tokenizer

Row = tuple[list[int], list[int]]  # input_ids, loss_mask


def write_sft_dataset(
    folder: Path, tokenizer_file: Path, train: list[Row], val: list[Row], pad_id: int, eos_id: int
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tokenizer_file, folder / "tokenizer.json")
    shards = []
    for split, rows in (("train", train), ("val", val)):
        path = f"{split}/part-00000.parquet"
        (folder / split).mkdir(exist_ok=True)
        table = pa.table(
            {
                "id": [f"{split}/{i}" for i in range(len(rows))],
                "input_ids": [ids for ids, _ in rows],
                "loss_mask": [mask for _, mask in rows],
            },
            schema=RENDERED_SCHEMA,
        )
        pq.write_table(table, folder / path)
        shards.append(
            SFTShard(
                path=path,
                split=split,
                rows=len(rows),
                tokens=sum(len(ids) for ids, _ in rows),
                trained_tokens=sum(sum(mask) for _, mask in rows),
            )
        )
    index = SFTIndex(
        vocab_size=load_tokenizer(tokenizer_file).get_vocab_size(),
        eos_id=eos_id,
        pad_id=pad_id,
        tokenizer_hash="test",
        max_len=max(len(ids) for ids, _ in train + val),
        shards=shards,
    )
    (folder / SFT_INDEX_FILE).write_text(index.model_dump_json(indent=2))
    return folder
