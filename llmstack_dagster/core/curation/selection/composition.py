"""Planned versus realized composition of a mixture: table rows (per unit, per bucket and per
domain), Markdown and a bar chart."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from llmstack_dagster.core.charts import figure, png_bytes
from llmstack_dagster.core.curation.selection.mixture_plan import MixturePlan


def composition_rows(
    plan: MixturePlan, realized_tokens: dict[str, float]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(per unit, per bucket) rows: planned and realized tokens and shares."""
    realized_total = sum(realized_tokens.values()) or 1.0
    bucket_rows = []
    per_unit: dict[tuple[str, str], float] = defaultdict(float)
    for b in plan.buckets:
        realized = float(realized_tokens.get(b.key, 0.0))
        per_unit[(b.strategy, b.unit)] += realized
        bucket_rows.append(
            {
                "bucket": b.key,
                "domain": b.domain,
                "unit": b.unit,
                "planned_tokens": round(b.sampled_tokens),
                "realized_tokens": round(realized),
                "planned_share": b.weight,
                "realized_share": realized / realized_total,
                "planned_epochs": b.epochs,
                "realized_epochs": realized / b.available_tokens if b.available_tokens else 0.0,
            }
        )
    unit_rows = [
        {
            "unit": u.unit,
            "strategy": u.strategy,
            "available_tokens": u.available_tokens,
            "planned_tokens": round(u.sampled_tokens),
            "realized_tokens": round(per_unit[(u.strategy, u.unit)]),
            "planned_share": u.weight,
            "realized_share": per_unit[(u.strategy, u.unit)] / realized_total,
            "planned_epochs": u.epochs,
        }
        for u in plan.units
    ]
    return unit_rows, bucket_rows


def domain_rows(bucket_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-domain planned and realized tokens and shares, summed over the bucket rows."""
    columns = ("planned_tokens", "realized_tokens", "planned_share", "realized_share")
    totals: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(columns, 0.0))
    for row in bucket_rows:
        for column in columns:
            totals[row["domain"]][column] += row[column]
    return [
        {"domain": domain, **{c: round(v) if c.endswith("_tokens") else v for c, v in t.items()}}
        for domain, t in sorted(totals.items())
    ]


def domain_markdown(rows: list[dict[str, Any]]) -> str:
    """The per-domain rows as a Markdown table (shares in percent)."""
    header = "| domain | planned | realized | planned % | realized % |"
    lines = [header, "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['domain']} | {r['planned_tokens']:,} | {r['realized_tokens']:,} | "
            f"{100 * r['planned_share']:.2f} | {100 * r['realized_share']:.2f} |"
        )
    return "\n".join(lines)


def composition_markdown(rows: list[dict[str, Any]]) -> str:
    header = "| unit | strategy | available | planned | realized | planned % | realized % |"
    lines = [header, "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['unit']} | {r['strategy']} | {r['available_tokens']:,} | "
            f"{r['planned_tokens']:,} | {r['realized_tokens']:,} | "
            f"{100 * r['planned_share']:.2f} | {100 * r['realized_share']:.2f} |"
        )
    return "\n".join(lines)


def composition_chart_png(rows: list[dict[str, Any]]) -> bytes:
    """Grouped horizontal bars of planned and realized shares per unit, as PNG bytes."""
    names = [f"{r['unit']} ({r['strategy']})" for r in rows]
    positions = range(len(rows))
    fig = figure(8, 1.5 + 0.45 * len(rows))
    ax = fig.subplots()
    for offset, column in ((-0.2, "planned_share"), (0.2, "realized_share")):
        heights = [r[column] for r in rows]
        ax.barh([p + offset for p in positions], heights, 0.4, label=column.split("_")[0])
    ax.set_yticks(list(positions), names)
    ax.invert_yaxis()
    ax.set_xlabel("share of mixture tokens")
    ax.set_title("Mixture composition: planned vs realized")
    ax.legend()
    return png_bytes(fig)
