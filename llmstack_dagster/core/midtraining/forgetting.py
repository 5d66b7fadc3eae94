"""Forgetting: each validation domain's loss and bits per byte before and after midtraining.

A run from initial weights evaluates at step 0, before its first update, so the base model
and the midtrained model are measured by the same code on the same validation windows (the
pretraining validation split re-tokenized with the base tokenizer, plus the target domain's
held-out documents).
"""

from __future__ import annotations

from typing import Any


def _domain_values(record: dict[str, Any]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for key, value in record.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "val":
            out.setdefault(parts[1], {})[parts[2]] = float(value)
    return out


def forgetting_rows(metrics: list[dict[str, Any]], targets: set[str]) -> list[dict[str, Any]]:
    """One row per domain from the run's first and last evaluation records."""
    evaluations = [m for m in metrics if m.get("kind") == "eval" and "val/loss" in m]
    if len(evaluations) < 2 or evaluations[0]["step"] != 0:
        raise ValueError("forgetting needs the run's step-0 and final evaluations in its metrics")
    base, final = _domain_values(evaluations[0]), _domain_values(evaluations[-1])
    rows = []
    for domain in sorted(base.keys() & final.keys()):
        before, after = base[domain], final[domain]
        rows.append(
            {
                "domain": domain,
                "target": domain in targets,
                "base_loss": round(before["loss"], 4),
                "midtrained_loss": round(after["loss"], 4),
                "base_bpb": round(before["bpb"], 4),
                "midtrained_bpb": round(after["bpb"], 4),
                "bpb_change": round(after["bpb"] / before["bpb"] - 1.0, 4),
            }
        )
    return rows


def forgotten_domains(rows: list[dict[str, Any]], max_increase: float) -> list[str]:
    """Non-target domains whose bits per byte rose by more than ``max_increase`` (a share)."""
    return [
        f"{r['domain']} ({r['bpb_change']:+.1%})"
        for r in rows
        if not r["target"] and r["bpb_change"] > max_increase
    ]
