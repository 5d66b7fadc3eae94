"""Training tasks: what a stage plugs into the engine.

A task is an objective, a data source and the stage's evaluation, samples and export; the
engine (``engine.py``) owns everything else. ``TrainConfig.objective`` names the task, so a
run described by one JSON file builds the same task locally, under torchrun and on Modal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from llmstack_dagster.core.evaluation.prompting import Prompter
from llmstack_dagster.core.models.config import ModelConfig
from llmstack_dagster.core.posttraining.grpo_task import grpo_inputs, grpo_task
from llmstack_dagster.core.posttraining.preference_tasks import (
    dpo_task,
    preference_inputs,
    reward_task,
)
from llmstack_dagster.core.training.config import TrainConfig
from llmstack_dagster.core.training.data_loader import (
    TokenWindows,
    TrainBatches,
)
from llmstack_dagster.core.training.distributed import DistEnv
from llmstack_dagster.core.training.evaluation import (
    Autocast,
    evaluate_domains,
    sample_generations,
)
from llmstack_dagster.core.training.hf_import import export_for_tokenizer
from llmstack_dagster.core.training.init_weights import initial_model_config, is_checkpoint
from llmstack_dagster.core.training.objectives import NextToken
from llmstack_dagster.core.training.preflight import check_training_inputs
from llmstack_dagster.core.training.sft_task import sft_inputs, sft_task
from llmstack_dagster.core.training.token_shards import TokenShardIndex
from llmstack_dagster.core.training.tokenizer import load_tokenizer
from llmstack_dagster.core.training.training_task import TrainingTask


def next_token_inputs(cfg: TrainConfig, world_size: int) -> tuple[TokenShardIndex, ModelConfig]:
    """The checked token-shard index and the model shape of a next-token run."""
    initial = initial_model_config(cfg)
    index = check_training_inputs(
        Path(cfg.data_dir),
        seq_len=cfg.seq_len,
        global_batch=cfg.micro_batch_size * cfg.grad_accum_steps * world_size,
        model_vocab_size=initial.vocab_size if initial else None,
    )
    return index, initial or cfg.resolve_model(index.vocab_size)


def next_token_task(cfg: TrainConfig, env: DistEnv) -> TrainingTask:
    """Pretraining and continued pretraining on packed token shards."""
    data_dir = Path(cfg.data_dir)
    index, model_cfg = next_token_inputs(cfg, env.world_size)
    windows = TokenWindows(data_dir, index, index.split_shards("train"), cfg.seq_len)
    batches = TrainBatches(
        windows, cfg.micro_batch_size, cfg.grad_accum_steps, cfg.seed, env.rank, env.world_size
    )
    tokenizer_file = data_dir / index.tokenizer_file
    tokenizer = load_tokenizer(tokenizer_file)

    def evaluate(model: nn.Module, device: torch.device, autocast: Autocast) -> dict[str, float]:
        return evaluate_domains(
            model,
            data_dir,
            index,
            cfg.seq_len,
            cfg.micro_batch_size,
            cfg.eval.batches,
            device,
            autocast,
        )

    def sample(model: nn.Module, device: torch.device) -> list[dict[str, str]]:
        return sample_generations(model, tokenizer, cfg.eval, index.eos_id, cfg.seed)

    imported = cfg.init is not None and not is_checkpoint(Path(cfg.init.path))
    tokenizer_dir = Path(cfg.init.path) if imported else None  # type: ignore[union-attr]

    def export(checkpoint: Path, dest: Path) -> Path:
        return export_for_tokenizer(checkpoint, dest, tokenizer_file, index, tokenizer_dir)

    return TrainingTask(
        objective=NextToken(),
        data=batches,
        model_config=model_cfg,
        evaluate=evaluate,
        sample=sample,
        export=export,
        prompter=Prompter(tokenizer, index.eos_id),
        provenance={
            "date_min": index.date_min,
            "date_max": index.date_max,
            "mixture_hash": index.mixture_hash,
            "tokenizer_hash": index.tokenizer_hash,
            "data_version": index.data_version,
        },
    )


@dataclass(frozen=True)
class TaskKind:
    build: Callable[[TrainConfig, DistEnv], TrainingTask]
    check_inputs: Callable[[TrainConfig, int], object]  # raises on bad inputs, reads no data


TASKS: dict[str, TaskKind] = {
    "next_token": TaskKind(next_token_task, next_token_inputs),
    "sft": TaskKind(sft_task, sft_inputs),
    "reward": TaskKind(reward_task, preference_inputs),
    "dpo": TaskKind(dpo_task, preference_inputs),
    "grpo": TaskKind(grpo_task, grpo_inputs),
}


def _kind(cfg: TrainConfig) -> TaskKind:
    if cfg.objective not in TASKS:
        raise ValueError(f"unknown objective {cfg.objective!r}; choose one of {sorted(TASKS)}")
    return TASKS[cfg.objective]


def check_task_inputs(cfg: TrainConfig, world_size: int = 1) -> None:
    """Every check a run makes on its inputs before its first step, without starting it."""
    _kind(cfg).check_inputs(cfg, world_size)


def build_task(cfg: TrainConfig, env: DistEnv) -> TrainingTask:
    return _kind(cfg).build(cfg, env)
