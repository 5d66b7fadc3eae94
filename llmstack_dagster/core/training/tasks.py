"""Training tasks: what a stage plugs into the engine.

A task is an objective, a data source and the stage's evaluation, samples and export; the
engine (``engine.py``) owns everything else. ``TrainConfig.objective`` names the task, so a
run described by one JSON file builds the same task locally, under torchrun and on Modal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from llmstack_dagster.core.models.config import ModelConfig
from llmstack_dagster.core.training.config import TrainConfig
from llmstack_dagster.core.training.data_loader import (
    Batch,
    LoaderPosition,
    TokenWindows,
    TrainBatches,
)
from llmstack_dagster.core.training.distributed import DistEnv
from llmstack_dagster.core.training.evaluation import (
    Autocast,
    evaluate_domains,
    sample_generations,
)
from llmstack_dagster.core.training.hf_export import export_hf
from llmstack_dagster.core.training.hf_import import export_with_tokenizer_of
from llmstack_dagster.core.training.init_weights import init_model_config, is_checkpoint
from llmstack_dagster.core.training.objectives import NextToken, Objective
from llmstack_dagster.core.training.preflight import check_training_inputs
from llmstack_dagster.core.training.sft_task import sft_inputs, sft_task
from llmstack_dagster.core.training.token_shards import TokenShardIndex
from llmstack_dagster.core.training.tokenizer import has_our_special_tokens, load_tokenizer


class DataSource(Protocol):
    """This rank's micro-batches, one optimizer step at a time, from a resumable position."""

    global_batch: int
    tokens_per_step: int
    position: LoaderPosition

    def next_step(self) -> list[Batch]: ...


@dataclass
class TrainingTask:
    objective: Objective
    data: DataSource
    model_config: ModelConfig
    evaluate: Callable[[nn.Module, torch.device, Autocast], dict[str, float]]
    sample: Callable[[nn.Module, torch.device], list[dict[str, str]]]
    export: Callable[[Path, Path], Path]
    provenance: dict[str, Any] = field(default_factory=dict)  # recorded in checkpoint meta
    sample_at_eval: bool = False  # also sample at every evaluation (samples/step_*.md)


def initial_model_config(cfg: TrainConfig) -> ModelConfig | None:
    """The shape of the run's initial weights (None for a random initialization)."""
    if cfg.init is None:
        return None
    model = init_model_config(Path(cfg.init.path))
    if model.max_seq_len < cfg.seq_len:
        raise ValueError(
            f"initial weights {cfg.init.path}: max_seq_len {model.max_seq_len} < "
            f"seq_len {cfg.seq_len}"
        )
    return model


def export_for_tokenizer(
    checkpoint: Path,
    dest: Path,
    tokenizer_file: Path,
    index: TokenShardIndex | None = None,
    tokenizer_dir: Path | None = None,
) -> Path:
    """The HF export of a checkpoint: with the files and chat template of the imported model
    it was trained from (``tokenizer_dir``), else of our tokenizer, else of the imported
    tokenizer beside ``tokenizer_file``."""
    if tokenizer_dir is None and has_our_special_tokens(load_tokenizer(tokenizer_file)):
        return export_hf(checkpoint, dest, tokenizer_file, index)
    return export_with_tokenizer_of(checkpoint, tokenizer_dir or tokenizer_file.parent, dest)


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
        tokenizer = load_tokenizer(tokenizer_file)
        return sample_generations(
            model, tokenizer, cfg.eval, model_cfg.max_seq_len, device, index.eos_id, cfg.seed
        )

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
