"""A toy environment for online RL: "what is a + b?" with single-digit sums, whose correct
answer the GSM8K exact-match reward checks, and a tiny chat model warm-started to answer with
some digit (not the right one) so the reward has something to rise from."""

from __future__ import annotations

import random
from pathlib import Path

from llmstack_dagster.core.chat.conversation import Conversation, Turn
from llmstack_dagster.core.chat.render import ChatRenderer, Rendered
from llmstack_dagster.core.models.config import ModelConfig
from llmstack_dagster.core.posttraining.rewards import RLPrompt
from llmstack_dagster.core.posttraining.rl_prompts import RLPromptSetConfig, build_rl_prompts
from llmstack_dagster.core.storage import ShardManifest, Storage, write_version
from llmstack_dagster.core.training.config import TrainConfig
from llmstack_dagster.core.training.engine import train
from llmstack_dagster.core.training.tokenizer import load_tokenizer
from support.checkpoints import write_checkpoint
from support.sft_data import write_sft_dataset

OPERANDS = range(3)  # sums 0..4


def question(a: int, b: int) -> str:
    return f"What is {a} + {b}?"


def toy_prompts() -> list[RLPrompt]:
    """Every (a, b) pair, twice (train and held-out splits are by id)."""
    return [
        RLPrompt(
            f"toy-{a}-{b}-{copy}",
            "toy",
            (Turn(role="user", content=question(a, b)),),
            answer=str(a + b),
        )
        for copy in range(2)
        for a in OPERANDS
        for b in OPERANDS
    ]


def write_toy_prompts(root: Path, tokenizer_file: Path) -> Path:
    """The toy prompts as an ``rl_prompts`` folder (20% held out)."""
    store = Storage(str(root))
    cfg = RLPromptSetConfig(val_fraction=0.2, max_prompt_len=40)
    with write_version(store, "rl_prompts", None, "toy") as version:
        _, shards, drops, _ = build_rl_prompts(
            store, version, iter(toy_prompts()), tokenizer_file, cfg
        )
        manifest = version.commit(
            ShardManifest(asset="rl_prompts", partition=None, shards=shards, drops=drops)
        )
    return Path(store.local_path(manifest.folder))


def warm_started_model(root: Path, tokenizer_file: Path, steps: int = 80) -> Path:
    """A tiny chat model SFT-trained to answer the toy questions with a random digit."""
    renderer = ChatRenderer.from_tokenizer(tokenizer_file)
    vocab = load_tokenizer(tokenizer_file).get_vocab_size()
    cfg = ModelConfig(
        vocab_size=vocab,
        d_model=48,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        ffn_hidden=96,
        max_seq_len=64,
    )
    _, random_init = write_checkpoint(root / "random", cfg)
    rng = random.Random(0)
    rows = []
    for i in range(96):
        a, b = rng.choice(OPERANDS), rng.choice(OPERANDS)
        turns = [
            Turn(role="user", content=question(a, b)),
            Turn(role="assistant", content=str(rng.randrange(9))),
        ]
        rendered = renderer.render(Conversation(id=str(i), turns=turns), 64)
        assert isinstance(rendered, Rendered)
        rows.append((rendered.input_ids, rendered.loss_mask))
    data = write_sft_dataset(
        root / "sft_data", tokenizer_file, rows[:80], rows[80:], renderer.pad_id, renderer.eos_id
    )
    sft = TrainConfig.model_validate(
        {
            "data_dir": str(data),
            "out_dir": str(root / "sft"),
            "objective": "sft",
            "init": {"path": str(random_init)},
            "seq_len": 63,
            "micro_batch_size": 8,
            "max_steps": steps,
            "log_every": steps,
            "checkpoint_every": steps,
            "cpu_threads": 1,
            "export_hf": False,
            "optim": {"lr": 3e-3, "warmup_steps": 2, "weight_decay": 0.0},
            "eval": {"every": 0, "batches": 1, "max_new_tokens": 2},
        }
    )
    return train(sft, log=lambda _: None).checkpoint


def grpo_config(data: Path, out: Path, init: Path, **extra: object) -> TrainConfig:
    """GRPO on the toy: 4 prompts x 8 completions a step, answers of at most 3 tokens, 40
    steps at a constant learning rate."""
    fields = {
        "data_dir": str(data),
        "out_dir": str(out),
        "objective": "grpo",
        "init": {"path": str(init)},
        "seq_len": 63,
        "micro_batch_size": 16,
        "grad_accum_steps": 2,
        "max_steps": 40,
        "log_every": 1,
        "checkpoint_every": 20,
        "cpu_threads": 1,
        "export_hf": False,
        "optim": {
            "lr": 2e-3,
            "warmup_steps": 0,
            "weight_decay": 0.0,
            "schedule": "linear",
            "min_lr_ratio": 1.0,
        },
        "eval": {"every": 20, "batches": 1, "max_new_tokens": 3},
        "rl": {"group_size": 8, "max_new_tokens": 3, "rewards": {"gsm8k": 1.0}, "eval_prompts": 10},
    }
    return TrainConfig.model_validate(fields | extra)
