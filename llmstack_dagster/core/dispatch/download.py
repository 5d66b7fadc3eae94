"""Copy a finished run back from the Modal volume: final checkpoint, HF export, metrics."""

from __future__ import annotations

import posixpath
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


def download_run(
    volume: modal.Volume, run_rel: str, out_dir: Path, checkpoint: str | None
) -> list[str]:
    """Copy the wanted files of ``run_rel`` into ``out_dir``; ``COMPLETE`` markers go last.

    ``checkpoint`` is the checkpoint folder name (``step_00000300``). Returns the copied paths.
    """
    entries = [e for e in volume.listdir(run_rel, recursive=True) if e.type == FileEntryType.FILE]
    rels = [posixpath.relpath(e.path.lstrip("/"), run_rel.strip("/")) for e in entries]
    rels = sorted((r for r in rels if wanted(r, checkpoint)), key=lambda r: r.endswith(COMPLETE))
    for rel in rels:
        target = Path(out_dir) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".part-{target.name}")
        with open(tmp, "wb") as handle:
            volume.read_file_into_fileobj(posixpath.join(run_rel, rel), handle)
        tmp.replace(target)
    return rels
