"""Run folders of a training asset: one per run identity, so a run resumes only itself.

``{root}/runs/{identity}/`` holds one run (``identity.json``, checkpoints, metrics, export). A
re-materialization with the same identity resumes its folder; a changed config, data version
or initial weights gets a new folder, and the old ones stay until cleaned. ``fresh`` starts a
new folder even for the same identity (``{identity}-{UTC time}``); later runs of that
identity resume the newest of its folders.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from llmstack_dagster.core.training.checkpoint import latest_complete_checkpoint
from llmstack_dagster.core.training.run_identity import IDENTITY_FILE, RunIdentity, read_identity

RUNS = "runs"


@dataclass
class RunPlan:
    run_dir: Path
    resumes: bool
    reason: str


def run_folders(root: Path) -> list[Path]:
    """Run folders under ``root/runs`` (those with an identity), newest first."""
    runs = Path(root) / RUNS
    found = [p for p in runs.iterdir() if (p / IDENTITY_FILE).is_file()] if runs.is_dir() else []
    return sorted(found, key=lambda p: (p / IDENTITY_FILE).stat().st_mtime_ns, reverse=True)


def plan_run(root: Path, identity: RunIdentity, fresh: bool = False) -> RunPlan:
    """The folder this run trains in, whether it resumes there, and why."""
    folders = run_folders(root)
    same = [p for p in folders if (read_identity(p) or identity).id == identity.id]
    if same and not fresh:
        checkpoint = latest_complete_checkpoint(same[0])
        if checkpoint is None:
            return RunPlan(same[0], False, f"run {identity.id} has no checkpoint yet: step 0")
        step = int(checkpoint.name.removeprefix("step_"))
        return RunPlan(same[0], True, f"same run identity {identity.id}: resumes at step {step}")
    name = identity.id
    if fresh:
        name = f"{identity.id}-{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
        reason = f"fresh: true starts run {identity.id} over in a new folder"
    elif folders:
        previous = read_identity(folders[0])
        assert previous is not None
        changes = "; ".join(identity.changes_from(previous))
        reason = f"new run {identity.id} (the last run was {previous.id}): {changes}"
    else:
        reason = f"first run {identity.id}"
    return RunPlan(Path(root) / RUNS / name, False, reason)
