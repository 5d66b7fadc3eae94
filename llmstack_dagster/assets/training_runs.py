"""The one way a training asset dispatches a run: checks first, a folder per run identity,
the training resource, then a pointer to the result and the metadata every training asset
shows (resume, validation per domain, samples, loss curve)."""

from __future__ import annotations

import posixpath
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, MetadataValue

from llmstack_dagster.assets.common import (
    chart_metadata,
    markdown_table,
    shared_data_dir,
    yaml_overrides,
)
from llmstack_dagster.core.charts import figure, png_bytes
from llmstack_dagster.core.dispatch.outcome import TrainingOutcome
from llmstack_dagster.core.evaluation.eval_sets import rtp_prompts, seeded_subset
from llmstack_dagster.core.storage import Storage
from llmstack_dagster.core.training.config import TrainConfig
from llmstack_dagster.core.training.engine import SAMPLES_DIR, identity_of
from llmstack_dagster.core.training.runs import RUNS, RunPlan, plan_run
from llmstack_dagster.core.training.tasks import check_task_inputs
from llmstack_dagster.core.training.tokenizer import TOKENIZER_FILE
from llmstack_dagster.resources.training import TrainingResource

CURRENT_RUN = "current.json"
TOXICITY_TRACKING_PROMPTS = 16  # RealToxicityPrompts prompts continued at each evaluation
TOXICITY_TRACKING_SEED = 0  # {asset}/current.json: the run the asset last produced


@dataclass
class TrainedRun:
    outcome: TrainingOutcome
    plan: RunPlan
    current: dict[str, Any]


def toxicity_tracking_prompts(count: int) -> list[str]:
    """``count`` RealToxicityPrompts prompts for toxicity tracking, the same for every stage
    (one seed), so the curves of pretraining, midtraining and SFT compare."""
    if count == 0:
        return []
    try:
        data_dir = shared_data_dir()
    except FileNotFoundError as err:
        raise FileNotFoundError(f"toxicity tracking: {err}; or set toxicity_prompts: 0") from err
    return [p.text for p in seeded_subset(rtp_prompts(data_dir), count, TOXICITY_TRACKING_SEED)]


def asset_train_config(
    fields: dict[str, Any], config_path: str, data_dir: str, toxicity_prompts: int = 0
) -> TrainConfig:
    """A training asset's ``TrainConfig``: its config's fields with ``toxicity_prompts``
    tracking prompts, then any ``TrainConfig`` field set in the YAML file ``config_path``,
    for the data in ``data_dir`` (the run folder is chosen by :func:`run_training_asset`)."""
    if toxicity_prompts:
        prompts = toxicity_tracking_prompts(toxicity_prompts)
        fields = {**fields, "eval": fields["eval"].model_copy(update={"toxicity_prompts": prompts})}
    overrides = yaml_overrides(config_path)
    return TrainConfig.model_validate(
        {**fields, **overrides, "data_dir": data_dir, "out_dir": "unset"}
    )


def run_training_asset(
    context: AssetExecutionContext,
    store: Storage,
    training: TrainingResource,
    asset: str,
    config: TrainConfig,
    *,
    fresh: bool = False,
    work_dir: str = "",
) -> TrainedRun:
    """Check the inputs, pick the run folder, train there and record ``{asset}/current.json``.

    ``config.data_dir`` must be local (stage remote shards first). Every input problem is an
    error here, before the training resource starts anything (a Modal GPU container too).
    """
    check_task_inputs(config)
    identity = identity_of(config)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(work_dir or store.local_path(asset) or Path(tmp) / asset)
        plan = plan_run(root, identity, fresh)
        context.log.info(f"{plan.reason}; run folder {plan.run_dir}")
        outcome = training.run_training(
            context, config=config, data_dir=config.data_dir, out_dir=str(plan.run_dir)
        )
        shutil.copyfile(Path(config.data_dir) / TOKENIZER_FILE, plan.run_dir / TOKENIZER_FILE)
        run_rel = posixpath.join(asset, RUNS, plan.run_dir.name)
        if store.local_path(asset) is None or work_dir:
            store.upload_dir(str(plan.run_dir), run_rel)
        checkpoint = Path(outcome.checkpoint) if outcome.checkpoint else None
        current = {
            "run_id": identity.id,
            "run_dir": str(plan.run_dir),
            "run_rel": run_rel,
            "checkpoint": str(checkpoint) if checkpoint else None,
            "checkpoint_rel": str(checkpoint.relative_to(plan.run_dir)) if checkpoint else None,
            "hf_dir": outcome.hf_dir,
            "step": int(outcome.final.get("step", 0)),
        }
        store.write_json(posixpath.join(asset, CURRENT_RUN), current)
    return TrainedRun(outcome, plan, current)


def read_current_run(store: Storage, asset: str) -> dict[str, Any]:
    """``{asset}/current.json``, or a clear error when the asset was never materialized."""
    rel = posixpath.join(asset, CURRENT_RUN)
    if not store.exists(rel):
        raise FileNotFoundError(f"{asset} has no finished run in {store.url(asset)}: run it first")
    return store.read_json(rel)


def local_run_files(store: Storage, current: dict[str, Any], tmp: str) -> tuple[Path, Path]:
    """The final checkpoint folder and the tokenizer of a recorded run, as local paths (a run
    kept only in a remote storage root is downloaded into ``tmp``)."""
    run_dir = Path(current["run_dir"])
    if not (run_dir / TOKENIZER_FILE).is_file():
        run_dir = Path(store.download_dir(current["run_rel"], str(Path(tmp) / "run")))
    return run_dir / current["checkpoint_rel"], run_dir / TOKENIZER_FILE


def resume_metadata(run: TrainedRun) -> dict[str, Any]:
    resume = run.outcome.final.get("resume", {})
    return {
        "run_id": MetadataValue.text(run.current["run_id"]),
        "run_dir": MetadataValue.path(run.current["run_dir"]),
        "resumed": MetadataValue.bool(bool(resume.get("resumed"))),
        "resumed_from_step": MetadataValue.int(int(resume.get("from_step", 0))),
        "resume_reason": MetadataValue.text(f"{run.plan.reason}. {resume.get('detail', '')}"),
    }


def training_metadata(
    context: AssetExecutionContext, store: Storage, asset: str, run: TrainedRun
) -> dict[str, Any]:
    """What every training asset shows: paths, resume, validation, samples, loss curve."""
    outcome = run.outcome
    curve_rel = posixpath.join(asset, "loss_curve.png")
    store.write_bytes(curve_rel, loss_curve_png(outcome.metrics))
    final = outcome.final
    samples = str(outcome.metadata.get("samples", ""))
    validation = validation_rows(final_val_metrics(outcome))  # none: a task without a loss (RL)
    return {
        "checkpoint": MetadataValue.path(str(outcome.checkpoint)),
        "hf_export": MetadataValue.path(str(outcome.hf_dir)),
        "steps": MetadataValue.int(int(final.get("step", 0))),
        **resume_metadata(run),
        **({"validation": MetadataValue.md(markdown_table(validation))} if validation else {}),
        **({"samples": MetadataValue.md(samples)} if samples else {}),
        **samples_by_step(Path(run.current["run_dir"])),
        "final_metrics": MetadataValue.json(final),
        "loss_curve": chart_metadata(context.instance, store, curve_rel, "loss curve"),
    }


def samples_by_step(run_dir: Path) -> dict[str, Any]:
    """The answers sampled at each evaluation (tasks that sample there), one table a step."""
    files = sorted((run_dir / SAMPLES_DIR).glob("step_*.md"))
    if not files:
        return {}
    sections = [f"**step {int(f.stem.removeprefix('step_'))}**\n\n{f.read_text()}" for f in files]
    return {"samples_by_step": MetadataValue.md("\n\n".join(sections))}


def loss_curve_png(metrics: list[dict]) -> bytes:
    """Train and validation loss against step, as a PNG."""
    train = [(m["step"], m["train/loss"]) for m in metrics if "train/loss" in m]
    val = [(m["step"], m["val/loss"]) for m in metrics if "val/loss" in m]
    fig = figure(6, 3.5)
    ax = fig.subplots()
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss")
    if val:
        ax.plot(*zip(*val, strict=True), marker="o", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.legend()
    ax.grid(alpha=0.3)
    return png_bytes(fig)


def final_val_metrics(outcome: TrainingOutcome) -> dict[str, float]:
    """The ``val/...`` metrics of the run's summary (``metrics`` in summary.json), else of its
    last metrics record that has a validation loss."""
    summary = {k: v for k, v in outcome.final.get("metrics", {}).items() if k.startswith("val/")}
    if summary:
        return summary
    evaluated = [m for m in outcome.metrics if "val/loss" in m]
    return {k: v for k, v in (evaluated[-1] if evaluated else {}).items() if k.startswith("val/")}


def validation_rows(values: dict[str, float]) -> list[dict]:
    """Validation loss and bits per byte per domain (``all``: the token-weighted loss)."""
    rows: dict[str, dict] = {"all": {"domain": "all", "loss": "", "bpb": ""}}
    for key, value in sorted(values.items()):
        if not key.startswith("val/"):
            continue
        domain, _, metric = key.removeprefix("val/").rpartition("/")
        row = rows.setdefault(domain or "all", {"domain": domain, "loss": "", "bpb": ""})
        row[metric] = round(float(value), 4)
    return [row for row in rows.values() if (row["loss"], row["bpb"]) != ("", "")]
