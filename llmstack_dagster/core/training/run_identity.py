"""A training run's identity: its resolved config, its data version and its initial weights.

A run resumes only within its identity. Changing the seed, the schedule, the model, the data
or the initial weights makes a new run in a new folder; settings that do not change what is
trained (paths, logging, evaluation, checkpoint cadence, compilation, the parallel layout)
are left out, so a retry with a different log interval still resumes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from llmstack_dagster.core.training.config import TrainConfig
from llmstack_dagster.core.training.token_shards import INDEX_FILE

IDENTITY_FILE = "identity.json"
# TrainConfig fields that do not change the trained model
OPERATIONAL_FIELDS = {
    "data_dir",
    "out_dir",
    "device",
    "compile",
    "cpu_threads",
    "parallelism",
    "fsdp_min_params",
    "checkpoint_every",
    "keep_checkpoints",
    "log_every",
    "export_hf",
    "eval",
    "reference_logprobs",  # a path: the cache must carry the reference's digest (checked)
}
# settings only some objectives read: left out of the other runs' identities
TASK_FIELDS = {"preference": {"reward", "dpo"}, "rl": {"grpo"}}


class RunIdentity(BaseModel):
    id: str
    config: dict[str, Any]
    data_version: str
    init_weights: str | None = None

    def changes_from(self, other: RunIdentity) -> list[str]:
        """What differs from ``other``, one ``name: old -> new`` entry per difference."""
        changes = [
            f"{key}: {other.config.get(key)!r} -> {self.config.get(key)!r}"
            for key in sorted(set(self.config) | set(other.config))
            if self.config.get(key) != other.config.get(key)
        ]
        if self.data_version != other.data_version:
            changes.append(f"data version: {other.data_version[:12]} -> {self.data_version[:12]}")
        if self.init_weights != other.init_weights:
            changes.append(
                f"initial weights: {(other.init_weights or 'random')[:12]} -> "
                f"{(self.init_weights or 'random')[:12]}"
            )
        return changes


def data_version(data_dir: Path) -> str:
    """The token shards' content version, else the SHA-256 of their index file."""
    raw = (Path(data_dir) / INDEX_FILE).read_bytes()
    return json.loads(raw).get("data_version") or hashlib.sha256(raw).hexdigest()


def run_identity(cfg: TrainConfig, data: str, init_weights: str | None) -> RunIdentity:
    """The identity of ``cfg`` trained on data version ``data`` from ``init_weights`` (a
    digest; None for random initialization)."""
    config = cfg.model_dump(mode="json", exclude=OPERATIONAL_FIELDS)
    for name, objectives in TASK_FIELDS.items():
        if cfg.objective not in objectives:
            config.pop(name, None)
    if config.get("init"):
        config["init"].pop("path")  # the weights count by their digest, not where they lie
    payload = json.dumps([config, data, init_weights], sort_keys=True)
    digest = hashlib.sha256(payload.encode()).hexdigest()[:16]
    return RunIdentity(id=digest, config=config, data_version=data, init_weights=init_weights)


def read_identity(run_dir: Path) -> RunIdentity | None:
    path = Path(run_dir) / IDENTITY_FILE
    return RunIdentity.model_validate_json(path.read_text()) if path.is_file() else None
