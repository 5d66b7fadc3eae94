"""A small model config and a saved checkpoint of it, for export and loading tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from llmstack_dagster.core.models.config import ModelConfig
from llmstack_dagster.core.models.llama import LlamaLM
from llmstack_dagster.core.training.checkpoint import CheckpointMeta, TrainerState, save_checkpoint
from llmstack_dagster.core.training.data_loader import LoaderPosition

SMALL = ModelConfig(
    vocab_size=512,
    d_model=64,
    n_layers=2,
    n_heads=4,
    n_kv_heads=2,
    ffn_hidden=160,
    max_seq_len=64,
    rope_theta=500.0,
)

def write_checkpoint(out_dir: Path, cfg: ModelConfig, **meta: Any) -> tuple[LlamaLM, Path]:
    torch.manual_seed(0)
    model = LlamaLM(cfg)
    with torch.no_grad():  # non-trivial norm weights so their mapping is checked too
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    optimizer = torch.optim.AdamW(model.parameters())
    fields = dict(step=1, tokens_seen=0, model=cfg.model_dump(), train_config={})
    path = save_checkpoint(
        out_dir,
        model.state_dict(),
        optimizer.state_dict() | {"state": {}},
        TrainerState(step=1, loader=LoaderPosition(), param_groups=[]),
        CheckpointMeta(**(fields | meta), code_version="test"),
    )
    return model, path
