"""Small rendered preference datasets (``core/posttraining/preference_index.py``) for the
reward-model and DPO task tests: toy pairs where the chosen reply is the polite one."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from llmstack_dagster.core.chat.conversation import Turn
from llmstack_dagster.core.chat.render import ChatRenderer
from llmstack_dagster.core.posttraining.preference_index import (
    PAIR_SCHEMA,
    PAIR_TEXT_SCHEMA,
    PREFERENCE_INDEX_FILE,
    PreferenceIndex,
    PreferenceShard,
)
from llmstack_dagster.core.training.tokenizer import load_tokenizer, tokenizer_hash

QUESTIONS = ["How do I bake bread?", "What is the capital of France?", "Tell me a joke.",
             "How do plants grow?", "Why is the sky blue?", "Name a prime number."]  # fmt: skip
POLITE = ["Happy to help: here is how.", "Sure, the answer is below.", "Of course, gladly."]
RUDE = ["No. Figure it out yourself.", "Stop asking me.", "Whatever, go away."]


def write_preference_dataset(folder: Path, tokenizer_file: Path, pairs: int = 48,
                             val: int = 8, seed: int = 0) -> Path:  # fmt: skip
    """``pairs`` training and ``val`` held-out toy pairs rendered with our template."""
    rng = random.Random(seed)
    renderer = ChatRenderer.from_tokenizer(tokenizer_file)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tokenizer_file, folder / "tokenizer.json")
    shards, texts, longest = [], [], 0
    for split, count in (("train", pairs), ("val", val)):
        rows = []
        for i in range(count):
            prompt = [Turn(role="user", content=rng.choice(QUESTIONS))]
            chosen, rejected = rng.choice(POLITE), rng.choice(RUDE)
            prompt_ids = renderer.prompt_ids(prompt)
            replies = []
            for reply in (chosen, rejected):
                full = renderer.prompt_ids([*prompt, Turn(role="assistant", content=reply)])
                ids = full[len(prompt_ids) :]
                ids = ids[: ids.index(renderer.end_turn_id) + 1]  # up to its end of turn
                replies.append(ids)
            longest = max(longest, len(prompt_ids) + max(map(len, replies)))
            pair_id = f"{split}-{i}"
            rows.append({"id": pair_id, "prompt_ids": prompt_ids, "chosen_ids": replies[0],
                         "rejected_ids": replies[1]})  # fmt: skip
            texts.append({"id": pair_id, "source": "toy", "split": split,
                          "prompt": [t.model_dump() for t in prompt], "chosen": chosen,
                          "rejected": rejected})  # fmt: skip
        (folder / split).mkdir(exist_ok=True)
        path = f"{split}/part-00000.parquet"
        pq.write_table(pa.Table.from_pylist(rows, schema=PAIR_SCHEMA), folder / path)
        shards.append(PreferenceShard(path=path, split=split, rows=count))
    (folder / "pairs").mkdir(exist_ok=True)
    pq.write_table(pa.Table.from_pylist(texts, schema=PAIR_TEXT_SCHEMA),
                   folder / "pairs" / "part-00000.parquet")  # fmt: skip
    index = PreferenceIndex(
        vocab_size=load_tokenizer(tokenizer_file).get_vocab_size(),
        eos_id=renderer.eos_id,
        pad_id=renderer.pad_id,
        end_turn_id=renderer.end_turn_id,
        tokenizer_hash=tokenizer_hash(tokenizer_file),
        template="ours",
        data_version="toy-v1",
        max_len=longest,
        max_prompt_len=longest,
        shards=shards,
    )
    (folder / PREFERENCE_INDEX_FILE).write_text(index.model_dump_json(indent=2))
    return folder
