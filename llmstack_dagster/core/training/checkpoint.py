"""Atomic, pickle-free checkpoints and discovery of the latest complete one.

``{out_dir}/checkpoints/step_00000100/``::

    model.safetensors       weights (a tied head is stored once, as the embedding)
    optimizer.safetensors   per-parameter state tensors, ``<param name>::<state key>``
    rng.safetensors         torch CPU (and CUDA) generator states as uint8 tensors
    state.json              step, loader position, optimizer param groups, grad-scaler state
    meta.json               CheckpointMeta: config, data date range, hashes, code version
    COMPLETE                written last: step, and byte size and SHA-256 of every file;
                            folders without it are ignored

The folder is built under a temporary name, fsynced and renamed, then ``COMPLETE`` is
written. Loading verifies every file against ``COMPLETE`` and reads only safetensors and
JSON, so nothing is unpickled. A checkpoint that fails (truncated, bit-flipped, missing or
unparseable file) raises :class:`CorruptCheckpointError`; :func:`load_latest_checkpoint`
then renames it to ``corrupt-step_...`` (kept for inspection, never picked again) and falls
back to the next newest one. A ``COMPLETE`` written before checksums existed (no
``files``) is accepted unverified: such a checkpoint is checked only by loading it.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, Field
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from llmstack_dagster.core.training.atomic import atomic_dir, write_text_atomic
from llmstack_dagster.core.training.data_loader import LoaderPosition

CHECKPOINTS = "checkpoints"
COMPLETE = "COMPLETE"
CORRUPT_PREFIX = "corrupt-"
_STEP_DIR = re.compile(r"^step_(\d{8})$")
_LEFTOVER = re.compile(r"^\.(tmp|old)-(step_\d{8})-")  # atomic_dir's temporary siblings
_SEP = "::"
_READ_ERRORS = (SafetensorError, ValueError, FileNotFoundError)  # ValueError: JSON, pydantic


class CorruptCheckpointError(ValueError):
    """A file of a checkpoint marked complete is missing, truncated, altered or unreadable."""

    def __init__(self, path: Path, file: str, problem: str) -> None:
        self.path, self.file, self.problem = Path(path), file, problem
        super().__init__(f"checkpoint {path} is corrupt ({file}: {problem})")


class FileDigest(BaseModel):
    bytes: int
    sha256: str


class CompleteMarker(BaseModel):
    """The ``COMPLETE`` file; ``files`` is None in checkpoints written before checksums."""

    step: int
    files: dict[str, FileDigest] | None = None


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
    run_id: str | None = None  # the run identity (core/training/run_identity.py)
    init_weights: str | None = None  # SHA-256 of the initial weights; None: random init
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
    """The newest checkpoint with a ``COMPLETE`` marker, or None (partial ones are ignored).

    Only the marker is looked at; :func:`load_latest_checkpoint` also verifies the files.
    """
    found = complete_checkpoints(out_dir)
    return found[-1] if found else None


def sweep_partial_checkpoints(out_dir: Path) -> list[Path]:
    """Remove the ``.tmp-step_*`` and ``.old-step_*`` folders a killed save left behind.

    A ``.old-step_N-*`` folder with a ``COMPLETE`` marker while ``step_N`` is absent is the
    only copy of that checkpoint (killed between atomic_dir's two renames): it is renamed
    back to ``step_N`` instead. Call it with no save in progress. Returns the removed paths.
    """
    root = Path(out_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    removed = []
    for path in sorted(root.iterdir()):
        match = _LEFTOVER.match(path.name)
        if match is None:
            continue
        final = root / match[2]
        if match[1] == "old" and (path / COMPLETE).is_file() and not final.exists():
            path.rename(final)
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed.append(path)
    return removed


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, streamed in chunks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _digests(folder: Path) -> dict[str, FileDigest]:
    return {
        p.name: FileDigest(bytes=p.stat().st_size, sha256=file_sha256(p))
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


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
        marker = CompleteMarker(step=trainer_state.step, files=_digests(tmp))
    write_text_atomic(final / COMPLETE, marker.model_dump_json(indent=2))
    if keep is not None:
        for old in complete_checkpoints(out_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def read_checkpoint_meta(path: Path) -> CheckpointMeta:
    return CheckpointMeta.model_validate_json((Path(path) / "meta.json").read_text())


def read_complete_marker(path: Path) -> CompleteMarker:
    """The ``COMPLETE`` marker of a checkpoint folder (FileNotFoundError if it is partial)."""
    path = Path(path)
    if not (path / COMPLETE).is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no {COMPLETE} marker)")
    try:
        return CompleteMarker.model_validate_json((path / COMPLETE).read_text())
    except ValueError as exc:
        raise CorruptCheckpointError(path, COMPLETE, f"unreadable marker: {exc}") from exc


def verify_checkpoint(path: Path) -> bool:
    """Check every file's size and SHA-256 against ``COMPLETE``.

    Returns False for an old-format marker without checksums (nothing to verify: loading is
    its only check); raises CorruptCheckpointError on a missing or mismatching file.
    """
    path = Path(path)
    marker = read_complete_marker(path)
    if marker.files is None:
        return False
    for name, expected in marker.files.items():
        file = path / name
        if not file.is_file():
            raise CorruptCheckpointError(path, name, "missing")
        size = file.stat().st_size
        if size != expected.bytes:
            raise CorruptCheckpointError(
                path, name, f"size {size} bytes, expected {expected.bytes}"
            )
        if file_sha256(file) != expected.sha256:
            raise CorruptCheckpointError(path, name, "checksum mismatch")
    return True


@dataclass
class LoadedCheckpoint:
    model_state: dict[str, torch.Tensor]
    optim_state: dict[str, Any]
    trainer_state: TrainerState
    rng: dict[str, torch.Tensor]
    meta: CheckpointMeta
    path: Path


@contextmanager
def _reading(path: Path, name: str) -> Iterator[None]:
    """Turn a parse error of ``path / name`` into a CorruptCheckpointError naming the file."""
    try:
        yield
    except _READ_ERRORS as exc:
        raise CorruptCheckpointError(path, name, f"unreadable: {exc}") from exc


def load_checkpoint(path: Path) -> LoadedCheckpoint:
    """Everything in a complete checkpoint, verified first; optimizer state in torch's layout.

    Raises FileNotFoundError for a partial folder, CorruptCheckpointError for a bad file.
    """
    path = Path(path)
    verify_checkpoint(path)
    with _reading(path, "meta.json"):
        meta = read_checkpoint_meta(path)
    with _reading(path, "model.safetensors"):
        weights = load_file(str(path / "model.safetensors"))
    if meta.model.get("tie_embeddings"):
        weights["lm_head.weight"] = weights["embed_tokens.weight"]
    with _reading(path, "state.json"):
        state = TrainerState.model_validate_json((path / "state.json").read_text())
    groups = [
        {k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in state.param_groups
    ]
    with _reading(path, "optimizer.safetensors"):
        optim_flat = load_file(str(path / "optimizer.safetensors"))
    with _reading(path, "rng.safetensors"):
        rng = load_file(str(path / "rng.safetensors"))
    optim_state = {"state": unflatten_optimizer_state(optim_flat), "param_groups": groups}
    return LoadedCheckpoint(weights, optim_state, state, rng, meta, path)


def _set_aside(path: Path) -> Path:
    """Rename a corrupt checkpoint to ``corrupt-<name>`` (unique) so it is never picked again."""
    target = path.with_name(f"{CORRUPT_PREFIX}{path.name}")
    if target.exists():
        target = path.with_name(f"{CORRUPT_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}")
    path.rename(target)
    return target


def load_latest_checkpoint(out_dir: Path, warn: Callable[[str], None]) -> LoadedCheckpoint | None:
    """The newest complete checkpoint that verifies and loads, or None if there is none.

    Each corrupt one met on the way is renamed to ``corrupt-step_...`` (kept for inspection)
    and reported through ``warn``; when all are corrupt the warning says so and None is
    returned, so the caller decides whether to start from scratch.
    """
    candidates = complete_checkpoints(out_dir)[::-1]
    for i, path in enumerate(candidates):
        try:
            return load_checkpoint(path)
        except (CorruptCheckpointError, FileNotFoundError) as exc:
            try:
                aside = f"moved to {_set_aside(path).name}"
            except FileNotFoundError:  # another process (rank) moved it first
                aside = "already moved aside"
            rest = candidates[i + 1 :]
            then = f"falling back to {rest[0].name}" if rest else "no usable checkpoint left"
            warn(f"{exc}; {aside}; {then}")
    return None
