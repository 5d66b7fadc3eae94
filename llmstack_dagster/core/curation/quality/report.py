"""Bounded-memory summaries of a scored partition: histograms, label counts, a perplexity PNG."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from llmstack_dagster.core.charts import figure, png_bytes

PP_EDGES = np.logspace(0, 6, 61)  # perplexity 1 .. 1e6, 10 bins per decade
TOXICITY_BINS = 1000
PROB_BINS = 10


class ScoreSummary:
    """Histograms and counts accumulated row by row."""

    def __init__(self) -> None:
        self.pp_counts = np.zeros(len(PP_EDGES) + 1, dtype=np.int64)  # + under/overflow
        self.toxicity_counts = np.zeros(TOXICITY_BINS, dtype=np.int64)
        self.quality_prob_counts = np.zeros(PROB_BINS, dtype=np.int64)
        self.labels: dict[str, Counter[str]] = {
            k: Counter() for k in ("quality_label", "domain_label", "ccnet_bucket", "rule_set")
        }

    def add(self, row: dict[str, Any]) -> None:
        if row["perplexity"] is not None:
            self.pp_counts[np.searchsorted(PP_EDGES, row["perplexity"], side="right")] += 1
        if row["toxicity"] is not None:
            self.toxicity_counts[min(int(row["toxicity"] * TOXICITY_BINS), TOXICITY_BINS - 1)] += 1
        if row["quality_high_prob"] is not None:
            p = row["quality_high_prob"]
            self.quality_prob_counts[min(int(p * PROB_BINS), PROB_BINS - 1)] += 1
        for key, counter in self.labels.items():
            if row[key] is not None:
                counter[row[key]] += 1

    def toxicity_quantile(self, fraction: float) -> float | None:
        """Toxicity below which about ``fraction`` of the scored docs fall (bin resolution)."""
        total = self.toxicity_counts.sum()
        if not total:
            return None
        cumulative = np.cumsum(self.toxicity_counts) / total
        return float((np.searchsorted(cumulative, fraction, side="left") + 1) / TOXICITY_BINS)

    def distributions(self) -> dict[str, Any]:
        coarse = self.toxicity_counts.reshape(PROB_BINS, -1).sum(axis=1)
        return {
            **{key: dict(sorted(counter.items())) for key, counter in self.labels.items()},
            "toxicity_histogram": {"edges": np.linspace(0, 1, PROB_BINS + 1).round(2).tolist(),
                                   "counts": coarse.tolist()},
            "quality_high_prob_histogram": {
                "edges": np.linspace(0, 1, PROB_BINS + 1).round(2).tolist(),
                "counts": self.quality_prob_counts.tolist(),
            },
            "perplexity_histogram": {"edges": PP_EDGES.round(2).tolist(),
                                     "counts": self.pp_counts.tolist()},
        }  # fmt: skip

    def perplexity_png(
        self, title: str, cutoffs: tuple[float, float], max_pp: float | None
    ) -> bytes:
        """Log-scale perplexity histogram with the bucket cutoffs and the drop threshold."""
        fig = figure(7, 3.5)
        ax = fig.subplots()
        inner = self.pp_counts[1:-1]
        ax.bar(PP_EDGES[:-1], inner, width=np.diff(PP_EDGES), align="edge", color="#4c72b0")
        for x, label, color in ((cutoffs[0], "p30", "green"), (cutoffs[1], "p60", "orange")):
            ax.axvline(x, color=color, linestyle="--", label=f"{label} = {x:.0f}")
        if max_pp is not None:
            ax.axvline(max_pp, color="red", label=f"drop > {max_pp:.0f}")
        ax.set_xscale("log")
        ax.set_xlabel("CCNet perplexity")
        ax.set_ylabel("documents")
        ax.set_title(title)
        ax.legend(fontsize=8)
        return png_bytes(fig)
