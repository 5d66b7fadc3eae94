"""Small generated documents and JSON Lines corpora for storage and reliability tests."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmstack_dagster.core.schema import make_document

WORDS = [
    "river", "stone", "market", "winter", "garden", "letter", "engine", "forest", "silver",
    "harbor", "window", "candle", "mountain", "paper", "signal", "orchard", "lantern", "meadow",
    "copper", "thunder", "valley", "bridge",
]


def prose(rng: random.Random, words: int) -> str:
    """Random words from a small vocabulary, with full stops every dozen words."""
    out = []
    for i in range(words):
        out.append(rng.choice(WORDS) + ("." if i % 12 == 11 else ""))
    return " ".join(out)


def documents(n: int, prefix: str = "d", domain: str = "web") -> Iterator[dict[str, Any]]:
    """``n`` document rows with ids ``{prefix}/{i}``."""
    rng = random.Random(prefix)
    for i in range(n):
        yield make_document(
            id=f"{prefix}/{i}",
            text=prose(rng, 20),
            domain=domain,
            source=prefix,
            created=datetime(2021, 1, 1 + i % 28, tzinfo=UTC),
        )


def write_jsonl(path: Path, n: int, prefix: str = "doc", words: int = 40, seed: int = 0) -> Path:
    """A JSON Lines file of ``n`` distinct records ``{"id", "text", "created"}``."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(n):
            record = {"id": f"{prefix}-{i}", "text": f"{prefix} {i}. " + prose(rng, words),
                      "created": f"2021-{1 + i % 12:02d}-01T00:00:00Z"}  # fmt: skip
            handle.write(json.dumps(record) + "\n")
    return path
