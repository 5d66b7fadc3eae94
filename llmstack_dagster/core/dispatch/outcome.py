"""What a training dispatch returns, read back from the run's local output folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from llmstack_dagster.core.training.checkpoint import latest_complete_checkpoint
from llmstack_dagster.core.training.config import TrainConfig
from llmstack_dagster.core.training.engine import SUMMARY_FILE, TrainResult
from llmstack_dagster.core.training.entrypoint import materialization_metadata
from llmstack_dagster.core.training.evaluation import generations_markdown
from llmstack_dagster.core.training.metrics import read_metrics

METRICS_FILE = "metrics.jsonl"
HF_DIR = "hf"


class TrainingOutcome(BaseModel):
    """A finished run: local paths, every metric record, the summary and the Pipes metadata."""

    out_dir: str
    checkpoint: str | None
    hf_dir: str | None
    metrics: list[dict[str, Any]] = Field(default_factory=list)
    final: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)


def raw_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Pipes-style ``{"raw_value": v, "type": t}`` entries reduced to ``v``."""
    return {
        k: v["raw_value"] if isinstance(v, dict) and "raw_value" in v else v
        for k, v in metadata.items()
    }


def local_hf_dir(out_dir: Path) -> Path | None:
    """``out_dir/hf`` when it holds an export."""
    hf_dir = Path(out_dir) / HF_DIR
    return hf_dir if (hf_dir / "config.json").is_file() else None


def summary_metadata(cfg: TrainConfig, out_dir: Path) -> dict[str, Any]:
    """The metadata the entrypoint reports under Pipes, rebuilt from a local copy of a run."""
    summary = json.loads((out_dir / SUMMARY_FILE).read_text())
    checkpoint = latest_complete_checkpoint(out_dir)
    result = TrainResult(
        step=summary["step"],
        checkpoint=checkpoint or Path(summary["checkpoint"]),
        hf_dir=local_hf_dir(out_dir),
        metrics=summary["metrics"],
        samples=summary.get("samples", []),
        samples_markdown=generations_markdown(summary.get("samples", []), cfg.eval.top_p),
    )
    local_cfg = cfg.model_copy(update={"out_dir": str(out_dir)})
    return raw_metadata(materialization_metadata(local_cfg, result))


def collect_outcome(out_dir: Path, metadata: dict[str, Any] | None = None) -> TrainingOutcome:
    """Read ``metrics.jsonl``, ``summary.json``, the latest complete checkpoint and ``hf/``."""
    out_dir = Path(out_dir)
    metrics_file = out_dir / METRICS_FILE
    summary_file = out_dir / SUMMARY_FILE
    checkpoint = latest_complete_checkpoint(out_dir)
    hf_dir = local_hf_dir(out_dir)
    final: dict[str, Any] = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    if final:
        final["checkpoint"] = str(checkpoint) if checkpoint else None
        final["hf_dir"] = str(hf_dir) if hf_dir else None
    return TrainingOutcome(
        out_dir=str(out_dir),
        checkpoint=str(checkpoint) if checkpoint else None,
        hf_dir=str(hf_dir) if hf_dir else None,
        metrics=read_metrics(metrics_file) if metrics_file.is_file() else [],
        final=final,
        metadata=metadata or {},
    )
