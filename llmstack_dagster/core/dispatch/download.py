"""Copy a finished run back from the Modal volume: final checkpoint, HF export, metrics."""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from pathlib import Path

import modal
from modal.volume import FileEntryType

from llmstack_dagster.core.training.checkpoint import CHECKPOINTS, COMPLETE

# Top-level entries of a run folder worth copying; checkpoints only for the final one.
RUN_FILES = ("metrics.jsonl", "summary.json", "run.json")
RUN_DIRS = ("hf", "tensorboard")


def wanted(rel: str, checkpoint: str | None) -> bool:
    """Whether a file (path relative to the run folder) belongs in the local copy."""
    top = rel.split("/", 1)[0]
    if top == CHECKPOINTS:
        return checkpoint is not None and rel.startswith(f"{CHECKPOINTS}/{checkpoint}/")
    return rel in RUN_FILES or top in RUN_DIRS


def fetch(
    volume: modal.Volume, remote: str, local: Path, keep: Callable[[str], bool] = lambda _: True
) -> list[str]:
    """Copy the files under ``remote`` that ``keep`` accepts (relative path) into ``local``.

    Each file is written under a temporary name and renamed; ``COMPLETE`` markers go last, so
    a local checkpoint is never marked complete before its files are there.
    """
    root = remote.strip("/")
    entries = [e for e in volume.listdir(root, recursive=True) if e.type == FileEntryType.FILE]
    rels = [posixpath.relpath(e.path.lstrip("/"), root) if root else e.path for e in entries]
    rels = sorted((r for r in rels if keep(r)), key=lambda r: r.endswith(COMPLETE))
    for rel in rels:
        target = Path(local) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".part-{target.name}")
        with open(tmp, "wb") as handle:
            volume.read_file_into_fileobj(posixpath.join(root, rel), handle)
        tmp.replace(target)
    return rels


def download_run(
    volume: modal.Volume, run_rel: str, out_dir: Path, checkpoint: str | None
) -> list[str]:
    """The run's metrics, summary, TensorBoard, HF export and final ``checkpoint`` folder."""
    return fetch(volume, run_rel, out_dir, lambda rel: wanted(rel, checkpoint))
