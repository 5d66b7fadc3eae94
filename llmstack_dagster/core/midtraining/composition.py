"""What the midtraining mixture is made of: per source and domain, and per input.

For each input, rows read = trained on + in val + dropped (by reason), so no row is lost.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from llmstack_dagster.core.training.token_shards import TokenShardIndex

TARGET, REPLAY = "target", "replay"
PRETRAINING_VAL, TARGET_HELDOUT = "pretraining_val", "target_heldout"


@dataclass
class Part:
    """Training data of one source and domain."""

    documents: int = 0  # distinct rows trained on
    rows: int = 0  # copies, repeats included
    tokens: int = 0


@dataclass
class InputTally:
    """What became of one input's rows."""

    read: int = 0
    train: int = 0
    val: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "train": self.train,
            "val": self.val,
            "dropped": dict(sorted(self.dropped.items())),
        }


def composition_rows(
    train: dict[tuple[str, str], Part],
    target_available: dict[str, int],
    index: TokenShardIndex,
    val_sources: dict[str, str],
) -> list[dict[str, Any]]:
    """One row per (source, domain) of the training split, then one per validation domain
    (source: ``pretraining_val`` or ``target_heldout``). Epochs: of the target's training
    pool of that domain."""
    total = sum(p.tokens for p in train.values()) or 1
    rows = [
        {
            "split": "train",
            "source": source,
            "domain": domain,
            "documents": part.documents,
            "rows": part.rows,
            "tokens": part.tokens,
            "share": part.tokens / total,
            "epochs": part.tokens / target_available[domain] if source == TARGET else None,
        }
        for (source, domain), part in sorted(train.items())
    ]
    for domain, source in sorted(val_sources.items()):
        stats = index.domains[domain]
        rows.append(
            {
                "split": "val",
                "source": source,
                "domain": domain,
                "documents": stats.val_docs,
                "rows": stats.val_docs,
                "tokens": stats.val_tokens,
                "share": None,
                "epochs": None,
            }
        )
    return rows


def composition_markdown(rows: list[dict[str, Any]]) -> str:
    """The composition rows as a Markdown table (shares of the training tokens in percent)."""
    lines = [
        "| split | source | domain | documents | rows | tokens | train % | epochs |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        share = "–" if r["share"] is None else f"{100 * r['share']:.2f}"
        epochs = "–" if r["epochs"] is None else f"{r['epochs']:.2f}"
        lines.append(
            f"| {r['split']} | {r['source']} | {r['domain']} | {r['documents']:,} | "
            f"{r['rows']:,} | {r['tokens']:,} | {share} | {epochs} |"
        )
    return "\n".join(lines)
