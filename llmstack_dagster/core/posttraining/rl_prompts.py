"""The prompt set online RL samples from: one folder, written by ``rl_prompts``.

Sources (the shared data folder; none of them an evaluation set):

- ``gsm8k``: GSM8K's *train* split (``eval/gsm8k/train.jsonl``; the test split is
  ``safety_eval``'s), each question followed by :data:`MATH_INSTRUCTION`, with its final
  answer for the verifiable rewards;
- ``red_team``: the first human turns of HH-RLHF harmless on the train side of the red-team
  split (``evaluation/eval_sets.red_team_split``; the held-out side is evaluation only), kind
  ``harmful``;
- ``safe``: the self-instruct seed tasks (``sft/self_instruct_seed_tasks.jsonl``), ordinary
  requests, kind ``safe``.

Layout::

    index.json                   RLPromptIndex (written last)
    tokenizer.json               the start model's tokenizer (and its HF configs)
    train/part-00000.parquet     PROMPT_SCHEMA rows; val/ the held-out prompts
    drops/                       prompts too long for ``max_prompt_len`` tokens, with reasons

A prompt's split is a seeded hash of its id, so it does not depend on the sources' order or
caps. The training run's copy of the folder also holds the reward model and the refusal
classifier the rewards need (:func:`attach_reward_files`).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq
import xxhash
from pydantic import BaseModel, Field

from llmstack_dagster.core.chat.conversation import TURN_TYPE, Turn
from llmstack_dagster.core.chat.render import ChatRenderer
from llmstack_dagster.core.chat.sft_render import copy_tokenizer
from llmstack_dagster.core.evaluation import eval_sets
from llmstack_dagster.core.posttraining.rewards import RLPrompt
from llmstack_dagster.core.schema import DROP_SCHEMA, make_drop
from llmstack_dagster.core.storage import OutputVersion, ShardInfo, ShardWriter, Storage
from llmstack_dagster.core.training.hf_import import MODEL_CONFIG
from llmstack_dagster.core.training.init_weights import (
    WEIGHTS_FILE,
    init_model_config,
    weights_digest,
)
from llmstack_dagster.core.training.tokenizer import load_tokenizer, tokenizer_hash

RL_INDEX_FILE = "index.json"
STAGE = "rl_prompts"
SPLITS = ("train", "val")
REWARD_MODEL_DIR = "reward_model"
REFUSAL_CLASSIFIER_FILE = "refusal_classifier.joblib"
MATH_INSTRUCTION = "\nGive the final answer on the last line as '#### <number>'."
PROMPT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("answer", pa.string(), nullable=False),
        pa.field("prompt", pa.list_(TURN_TYPE), nullable=False),
        pa.field("prompt_ids", pa.list_(pa.int32()), nullable=False),
    ]
)


class RLPromptShard(BaseModel):
    path: str  # relative to the folder
    split: Literal["train", "val"]
    rows: int


class RLPromptIndex(BaseModel):
    vocab_size: int
    eos_id: int
    pad_id: int
    end_turn_id: int
    tokenizer_file: str = "tokenizer.json"
    tokenizer_hash: str
    data_version: str
    max_prompt_len: int = Field(description="no rendered prompt is longer")
    shards: list[RLPromptShard] = Field(default_factory=list)
    reward_model: str | None = Field(default=None, description="checkpoint folder, relative")
    refusal_classifier: str | None = Field(default=None, description="joblib file, relative")

    def split_shards(self, split: str) -> list[RLPromptShard]:
        return [s for s in self.shards if s.split == split]


class RLPromptSetConfig(BaseModel):
    """Caps per source (None: all; a seeded subset otherwise), the held-out share and the
    longest rendered prompt kept."""

    gsm8k: int | None = None
    red_team: int | None = None
    safe: int | None = None
    val_fraction: float = Field(default=0.05, ge=0.0, lt=1.0)
    max_prompt_len: int = Field(default=512, ge=8)
    seed: int = 0


def load_rl_index(data_dir: Path) -> RLPromptIndex:
    return RLPromptIndex.model_validate_json((Path(data_dir) / RL_INDEX_FILE).read_text())


def split_of(prompt_id: str, fraction: float, seed: int) -> str:
    """``val`` when xxh64(f"{seed}:{id}") / 2**64 < ``fraction``, else ``train``."""
    return (
        "val"
        if xxhash.xxh64_intdigest(f"{seed}:{prompt_id}".encode()) / 2**64 < fraction
        else "train"
    )


def shared_rl_prompts(data_dir: Path, cfg: RLPromptSetConfig) -> Iterator[RLPrompt]:
    """The prompts of the three sources, capped as configured."""
    problems = eval_sets.seeded_subset(
        eval_sets.gsm8k_problems(data_dir, "train"), cfg.gsm8k, cfg.seed
    )
    for p in problems:
        turn = Turn(role="user", content=p.question + MATH_INSTRUCTION)
        yield RLPrompt(p.id, "gsm8k", (turn,), answer=p.answer)
    harmful = eval_sets.red_team_split(Path(data_dir) / eval_sets.RED_TEAM_PATH).train
    for i, text in enumerate(eval_sets.seeded_subset(harmful, cfg.red_team, cfg.seed), start=1):
        yield RLPrompt(
            f"red-team-train-{i}", "red_team", (Turn(role="user", content=text),), kind="harmful"
        )
    tasks = list(
        eval_sets.read_jsonl_rows(
            "self_instruct", str(Path(data_dir) / "sft/self_instruct_seed_tasks.jsonl")
        )
    )
    for _, task in eval_sets.seeded_subset(tasks, cfg.safe, cfg.seed):
        instances = task.get("instances") or [{}]
        extra = str(instances[0].get("input") or "").strip()
        text = str(task["instruction"]).strip() + (f"\n\n{extra}" if extra else "")
        yield RLPrompt(
            f"self-instruct-{task['id']}", "safe", (Turn(role="user", content=text),), kind="safe"
        )


def build_rl_prompts(
    storage: Storage,
    version: OutputVersion,
    prompts: Iterator[RLPrompt],
    tokenizer_path: Path,
    cfg: RLPromptSetConfig,
) -> tuple[RLPromptIndex, list[ShardInfo], list[ShardInfo], dict[str, Counter[str]]]:
    """Render and split ``prompts`` into ``version``'s folder: (index, prompt shards, drop
    shards, counts per source: read, train, val, too_long)."""
    renderer = ChatRenderer.from_tokenizer(tokenizer_path)
    folder = version.folder
    writers = {s: ShardWriter(storage, posixpath.join(folder, s), PROMPT_SCHEMA) for s in SPLITS}
    drops = ShardWriter(storage, posixpath.join(folder, "drops"), DROP_SCHEMA)
    counts: dict[str, Counter[str]] = {}
    for prompt in prompts:
        count = counts.setdefault(prompt.source, Counter(read=0, train=0, val=0, too_long=0))
        count["read"] += 1
        ids = renderer.prompt_ids(list(prompt.turns))
        if len(ids) > cfg.max_prompt_len:
            count["too_long"] += 1
            drops.write_row(
                make_drop(
                    stage=STAGE,
                    domain="rl",
                    source=prompt.source,
                    id=prompt.id,
                    reason="too_long",
                    detail=f"{len(ids)} tokens > max_prompt_len {cfg.max_prompt_len}",
                    sample=prompt.turns[-1].content,
                )
            )
            continue
        split = split_of(prompt.id, cfg.val_fraction, cfg.seed)
        count[split] += 1
        writers[split].write_row(
            {
                "id": prompt.id,
                "source": prompt.source,
                "split": split,
                "kind": prompt.kind,
                "answer": prompt.answer,
                "prompt": [t.model_dump() for t in prompt.turns],
                "prompt_ids": ids,
            }
        )
    shards, infos = [], []
    for split, writer in writers.items():
        for info in writer.close():
            shards.append(
                RLPromptShard(
                    path=posixpath.relpath(info.path, folder), split=split, rows=info.rows
                )
            )
            infos.append(info)
    copy_tokenizer(storage, tokenizer_path, folder)
    index = RLPromptIndex(
        vocab_size=load_tokenizer(tokenizer_path).get_vocab_size(),
        eos_id=renderer.eos_id,
        pad_id=renderer.pad_id,
        end_turn_id=renderer.end_turn_id,
        tokenizer_hash=tokenizer_hash(tokenizer_path),
        data_version=version.content_version,
        max_prompt_len=cfg.max_prompt_len,
        shards=shards,
    )
    storage.write_bytes(
        posixpath.join(folder, RL_INDEX_FILE), index.model_dump_json(indent=2).encode()
    )
    return index, infos, drops.close(), counts


def read_rl_prompts(
    data_dir: Path, index: RLPromptIndex, split: str
) -> tuple[list[RLPrompt], list[list[int]]]:
    """The prompts of a split in file order, and their rendered ids."""
    prompts: list[RLPrompt] = []
    ids: list[list[int]] = []
    for shard in index.split_shards(split):
        for row in pq.read_table(Path(data_dir) / shard.path).to_pylist():
            turns = tuple(Turn(**t) for t in row["prompt"])
            prompts.append(RLPrompt(row["id"], row["source"], turns, row["answer"], row["kind"]))
            ids.append(row["prompt_ids"])
    return prompts, ids


def attach_reward_files(
    folder: Path, reward_model: Path | None, refusal_classifier: bytes | None
) -> RLPromptIndex:
    """Copy the reward model (a checkpoint, stored as a weights folder: its weights and
    shape, no optimizer state) and the refusal classifier into a local prompt folder and
    record them in its index; the data version then covers them too (a new reward model is
    a new run)."""
    index = load_rl_index(folder)
    parts = [index.data_version]
    if reward_model is not None:
        dest = Path(folder) / REWARD_MODEL_DIR
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(reward_model) / WEIGHTS_FILE, dest / WEIGHTS_FILE)
        shape = init_model_config(Path(reward_model)).model_dump_json(indent=2)
        (dest / MODEL_CONFIG).write_text(shape)
        index.reward_model = REWARD_MODEL_DIR
        parts.append("reward:" + weights_digest(dest))
    if refusal_classifier is not None:
        (Path(folder) / REFUSAL_CLASSIFIER_FILE).write_bytes(refusal_classifier)
        index.refusal_classifier = REFUSAL_CLASSIFIER_FILE
        parts.append("refusal:" + hashlib.sha256(refusal_classifier).hexdigest())
    index.data_version = hashlib.sha256(json.dumps(parts).encode()).hexdigest()
    (Path(folder) / RL_INDEX_FILE).write_text(index.model_dump_json(indent=2))
    return index
