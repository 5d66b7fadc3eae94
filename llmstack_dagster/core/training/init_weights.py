"""Initial weights of a run: a complete checkpoint of this stack or a Hugging Face import.

Continued pretraining, SFT and the later stages start from one of these instead of a random
initialization. A weights folder counts in the run identity by the SHA-256 of its weights.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from llmstack_dagster.core.models.config import ModelConfig
from llmstack_dagster.core.models.llama import LlamaLM
from llmstack_dagster.core.training.checkpoint import (
    COMPLETE,
    load_checkpoint,
    read_checkpoint_meta,
)
from llmstack_dagster.core.training.config import TrainConfig

WEIGHTS_FILE = "model.safetensors"


def is_checkpoint(path: Path) -> bool:
    return (Path(path) / COMPLETE).is_file()


def init_model_config(path: Path) -> ModelConfig:
    """The shape of the model the weights in ``path`` belong to."""
    path = Path(path)
    if is_checkpoint(path):
        return ModelConfig.model_validate(read_checkpoint_meta(path).model)
    from llmstack_dagster.core.training.hf_import import read_model_config

    return read_model_config(path)


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


def weights_digest(path: Path) -> str:
    """SHA-256 of the weights file of a checkpoint or weights folder."""
    weights = Path(path) / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"initial weights: no {WEIGHTS_FILE} in {path}")
    digest = hashlib.sha256()
    with open(weights, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def load_init_state(
    path: Path, with_optimizer: bool
) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Model state (our parameter names) and, when asked and present, the optimizer state."""
    path = Path(path)
    if is_checkpoint(path):
        loaded = load_checkpoint(path)
        return loaded.model_state, loaded.optim_state if with_optimizer else None
    if with_optimizer:
        raise ValueError(f"initial weights {path} are an import: they have no optimizer state")
    from llmstack_dagster.core.training.hf_import import load_weights_folder

    return load_weights_folder(path)[1], None


def load_model(path: Path, model_class: type[LlamaLM] = LlamaLM) -> LlamaLM:
    """The model (``LlamaLM`` or a subclass, e.g. the reward model) of a checkpoint or an
    imported weights folder, with its weights loaded, on the CPU, in eval mode."""
    model = model_class(init_model_config(path))
    model.load_state_dict(load_init_state(path, with_optimizer=False)[0])
    return model.eval()
