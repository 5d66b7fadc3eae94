"""Atomic, pickle-free checkpoints and discovery of the latest complete one.

``{out_dir}/checkpoints/step_00000100/``::

    model.safetensors       weights (a tied head is stored once, as the embedding)
    optimizer.safetensors   per-parameter state tensors, ``<param name>::<state key>``
    rng.safetensors         torch CPU (and CUDA) generator states as uint8 tensors
    state.json              step, loader position, optimizer param groups, grad-scaler state
    meta.json               CheckpointMeta: config, data date range, hashes, code version
    COMPLETE                written last; folders without it are ignored

The folder is built under a temporary name, fsynced and renamed, then ``COMPLETE`` is
written. Loading reads only safetensors and JSON, so nothing is unpickled.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, Field
from safetensors.torch import load_file, save_file

from llmstack_dagster.core.training.atomic import atomic_dir, write_text_atomic
from llmstack_dagster.core.training.data_loader import LoaderPosition

CHECKPOINTS = "checkpoints"
COMPLETE = "COMPLETE"
_STEP_DIR = re.compile(r"^step_(\d{8})$")
_SEP = "::"


class CheckpointMeta(BaseModel):
    step: int
    tokens_seen: int
    model: dict[str, Any]
    train_config: dict[str, Any]
    date_min: datetime | None = None
    date_max: datetime | None = None
    mixture_hash: str | None = None
    tokenizer_hash: str | None = None
    data_version: str | None = None  # content version of the token shards trained on
    code_version: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    metrics: dict[str, float] = Field(default_factory=dict)


class TrainerState(BaseModel):
    step: int
    loader: LoaderPosition
    param_groups: list[dict[str, Any]]
    grad_scaler: dict[str, Any] | None = None


def checkpoint_dir(out_dir: Path, step: int) -> Path:
    return Path(out_dir) / CHECKPOINTS / f"step_{step:08d}"


def complete_checkpoints(out_dir: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    root = Path(out_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _STEP_DIR.match(p.name) and (p / COMPLETE).is_file()]
    return sorted(found, key=lambda p: p.name)


def latest_complete_checkpoint(out_dir: Path) -> Path | None:
    """The newest checkpoint with a ``COMPLETE`` marker, or None (partial ones are ignored)."""
    found = complete_checkpoints(out_dir)
    return found[-1] if found else None


def flatten_optimizer_state(state: dict[str, dict[str, Any]]) -> dict[str, torch.Tensor]:
    """``{param: {key: tensor}}`` to flat safetensors names ``param::key``."""
    flat = {}
    for param, entries in state.items():
        for key, value in entries.items():
            tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            flat[f"{param}{_SEP}{key}"] = tensor.detach().cpu().contiguous()
    return flat


def unflatten_optimizer_state(flat: dict[str, torch.Tensor]) -> dict[str, dict[str, Any]]:
    state: dict[str, dict[str, Any]] = {}
    for name, tensor in flat.items():
        param, key = name.rsplit(_SEP, 1)
        state.setdefault(param, {})[key] = tensor
    return state


def rng_state() -> dict[str, torch.Tensor]:
    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        states |= {f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    return states


def set_rng_state(states: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(states["cpu"])
    cuda = [states[k] for k in sorted(states) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(
    out_dir: Path,
    model_state: dict[str, torch.Tensor],
    optim_state: dict[str, Any],
    trainer_state: TrainerState,
    meta: CheckpointMeta,
    keep: int | None = None,
) -> Path:
    """Write one checkpoint atomically (call on rank 0 with full state dicts)."""
    final = checkpoint_dir(out_dir, trainer_state.step)
    weights = {k: v.detach().cpu().contiguous() for k, v in model_state.items()}
    if meta.model.get("tie_embeddings"):
        weights.pop("lm_head.weight", None)
    state = trainer_state.model_copy(update={"param_groups": optim_state["param_groups"]})
    with atomic_dir(final) as tmp:
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        save_file(flatten_optimizer_state(optim_state["state"]), str(tmp / "optimizer.safetensors"))
        save_file(rng_state(), str(tmp / "rng.safetensors"))
        (tmp / "state.json").write_text(state.model_dump_json(indent=2))
        (tmp / "meta.json").write_text(meta.model_dump_json(indent=2))
    write_text_atomic(final / COMPLETE, json.dumps({"step": trainer_state.step}))
    if keep is not None:
        for old in complete_checkpoints(out_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def read_checkpoint_meta(path: Path) -> CheckpointMeta:
    return CheckpointMeta.model_validate_json((Path(path) / "meta.json").read_text())


@dataclass
class LoadedCheckpoint:
    model_state: dict[str, torch.Tensor]
    optim_state: dict[str, Any]
    trainer_state: TrainerState
    rng: dict[str, torch.Tensor]
    meta: CheckpointMeta


def load_checkpoint(path: Path) -> LoadedCheckpoint:
    """Everything in a complete checkpoint; optimizer state in torch's layout, by name."""
    path = Path(path)
    if not (path / COMPLETE).is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint")
    meta = read_checkpoint_meta(path)
    weights = load_file(str(path / "model.safetensors"))
    if meta.model.get("tie_embeddings"):
        weights["lm_head.weight"] = weights["embed_tokens.weight"]
    state = TrainerState.model_validate_json((path / "state.json").read_text())
    groups = [
        {k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in state.param_groups
    ]
    optim_state = {
        "state": unflatten_optimizer_state(load_file(str(path / "optimizer.safetensors"))),
        "param_groups": groups,
    }
    rng = load_file(str(path / "rng.safetensors"))
    return LoadedCheckpoint(weights, optim_state, state, rng, meta)
