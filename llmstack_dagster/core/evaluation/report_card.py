"""The report card: one table across every checkpoint the pipeline builds.

Each stage is a column (pretrained, an imported base, midtrained, SFT, and the posttraining
stages as they land); each metric a row. A stage that has not run shows ``missing`` in every
row, and a metric a built stage does not have (or did not measure) shows ``–``: never a 0.
Training metrics come from a run's files (``summary.json``, ``metrics.jsonl`` and its final
checkpoint's metadata), safety metrics from that stage's ``safety_eval``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmstack_dagster.core.midtraining.forgetting import forgetting_rows
from llmstack_dagster.core.training.checkpoint import read_checkpoint_meta
from llmstack_dagster.core.training.metrics import read_metrics

MISSING = "missing"
NOT_MEASURED = "–"


@dataclass(frozen=True)
class Stage:
    """A column of the card: its name, the asset that builds it and its ``safety_eval``
    partition (None where the stage is not a generating model, e.g. the reward model)."""

    name: str
    asset: str
    safety_partition: str | None = None


@dataclass
class StageReport:
    stage: Stage
    built: bool
    metrics: dict[str, Any] = field(default_factory=dict)


# Metric rows in display order, with their labels; rows named ``val_bpb/<domain>`` are added
# per validation domain after ``val_loss``.
ROWS: list[tuple[str, str]] = [
    ("step", "steps"),
    ("tokens_seen", "tokens seen"),
    ("wall_time_min", "wall time (min)"),
    ("data_version", "data version"),
    ("date_range", "documents' date range"),
    ("val_loss", "validation loss"),
    ("forgetting_max_bpb_change", "forgetting: largest bpb rise, non-target"),
    ("sft_heldout_loss", "SFT held-out loss"),
    ("reward_heldout_loss", "reward model held-out loss"),
    ("reward_accuracy", "reward model held-out accuracy"),
    ("reward_margin", "reward model held-out margin"),
    ("dpo_heldout_loss", "DPO held-out loss"),
    ("preference_accuracy", "preference accuracy (held-out implicit rewards)"),
    ("preference_margin", "preference margin (held-out implicit rewards)"),
    ("rl_heldout_reward", "RL held-out reward (greedy)"),
    ("rl_heldout_gsm8k", "RL held-out GSM8K accuracy (train split's held-out prompts)"),
    ("win_rate_vs_sft", "win rate vs SFT (reward model)"),
    ("mode", "evaluated as"),
    ("toxicity/expected_max_toxicity", "expected max toxicity (RTP)"),
    ("toxicity/toxicity_probability", "toxicity probability (RTP)"),
    ("refusal/harmbench", "refusal: HarmBench"),
    ("refusal/donotanswer", "refusal: Do-Not-Answer"),
    ("refusal/red_team_heldout", "refusal: red-team held-out"),
    ("refusal/xstest_unsafe", "refusal: XSTest unsafe"),
    ("over_refusal/xstest_safe", "over-refusal: XSTest safe"),
    ("gsm8k/exact_match", "GSM8K exact match"),
    ("humaneval/pass@1", "HumanEval pass@1"),
]


# held-out metrics of the preference tasks, by the row that shows them
PREFERENCE_ROWS = {
    "val/accuracy": "reward_accuracy",
    "val/margin": "reward_margin",
    "val/rewards/accuracy": "preference_accuracy",
    "val/rewards/margin": "preference_margin",
    "val/reward": "rl_heldout_reward",  # online RL (GRPO)
    "val/gsm8k_accuracy": "rl_heldout_gsm8k",
}


def training_metrics(
    run_dir: Path, checkpoint: Path, targets: set[str], loss_row: str = "val_loss"
) -> dict[str, Any]:
    """A finished run's rows: steps, tokens, wall time, data version and date range, the
    held-out loss (as ``loss_row``: each objective's own loss), bits per byte per domain,
    forgetting when it ran from weights, and the preference tasks' accuracy and margins."""
    meta = read_checkpoint_meta(checkpoint)
    summary_file = run_dir / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    final = summary.get("metrics") or meta.metrics
    metrics_file = run_dir / "metrics.jsonl"
    records = read_metrics(metrics_file) if metrics_file.is_file() else []
    out: dict[str, Any] = {"step": meta.step, "tokens_seen": meta.tokens_seen}
    times = [r["time"] for r in records if "time" in r]
    if len(times) >= 2:  # first to last record: a resumed run counts its pause too
        out["wall_time_min"] = round((max(times) - min(times)) / 60, 2)
    if meta.data_version:
        out["data_version"] = meta.data_version[:12]
    if meta.date_min or meta.date_max:
        dates = [d.date().isoformat() if d else "?" for d in (meta.date_min, meta.date_max)]
        out["date_range"] = " .. ".join(dates)
    if "val/loss" in final:
        out[loss_row] = round(float(final["val/loss"]), 4)
    out |= {
        row: round(float(final[key]), 4) for key, row in PREFERENCE_ROWS.items() if key in final
    }
    for key, value in sorted(final.items()):
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "val" and parts[2] == "bpb":
            out[f"val_bpb/{parts[1]}"] = round(float(value), 4)
    evaluations = [r for r in records if r.get("kind") == "eval" and "val/loss" in r]
    if evaluations and evaluations[0]["step"] == 0 and len(evaluations) > 1 and targets:
        rows = forgetting_rows(records, targets)
        changes = [r["bpb_change"] for r in rows if not r["target"]]
        if changes:
            out["forgetting_max_bpb_change"] = max(changes)
    return out


def win_rate(ours: dict[str, float], reference: dict[str, float]) -> float | None:
    """Share of the prompts both answered where ours got the higher reward (a tie counts
    half); None when they share no prompt."""
    shared = ours.keys() & reference.keys()
    if not shared:
        return None
    wins = sum(1.0 if ours[k] > reference[k] else 0.5 if ours[k] == reference[k] else 0.0
               for k in shared)  # fmt: skip
    return wins / len(shared)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def card_rows(reports: list[StageReport]) -> list[tuple[str, list[str]]]:
    """(label, one cell per stage) for every metric row some built stage has."""
    keys = [key for key, _ in ROWS]
    domains = sorted({k for r in reports for k in r.metrics if k.startswith("val_bpb/")})
    at = keys.index("val_loss") + 1
    keys[at:at] = domains
    labels = dict(ROWS) | {d: f"bits per byte: {d.removeprefix('val_bpb/')}" for d in domains}
    rows = []
    for key in keys:
        if not any(key in r.metrics for r in reports):
            continue
        cells = [_cell(r.metrics.get(key, NOT_MEASURED)) if r.built else MISSING for r in reports]
        rows.append((labels[key], cells))
    return rows


def card_markdown(reports: list[StageReport], title: str = "Report card") -> str:
    header = "| metric | " + " | ".join(r.stage.name for r in reports) + " |"
    lines = [f"# {title}", "", header, "|---" * (len(reports) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in card_rows(reports)]
    built = ", ".join(r.stage.name for r in reports if r.built) or "none"
    missing = ", ".join(r.stage.name for r in reports if not r.built) or "none"
    lines += ["", f"Built: {built}. Not built yet: {missing}."]
    return "\n".join(lines) + "\n"


def card_json(reports: list[StageReport]) -> dict[str, Any]:
    return {
        "stages": [
            {
                "stage": r.stage.name,
                "asset": r.stage.asset,
                "built": r.built,
                "metrics": r.metrics if r.built else None,
            }
            for r in reports
        ]
    }
