"""The data half of ``sft_dataset``: sources -> checked, decontaminated, unique conversations
with a train/val split.

Per example, in order: quarantine (unreadable or unmappable, see ``sources``), decontamination
(a 13-gram shared with an eval set, see ``decontamination``), exact dedup (the normalized turns
seen before: the first copy is kept, later ones are dropped naming it), then the split. Every
example read is counted once, so per source
``read = quarantined + contaminated + duplicate + train + val``.

Split: ``val`` when xxh64(f"{seed}:{id}") / 2**64 < ``val_fraction``. A source with at least two
kept examples and none in ``val`` gives its lowest-hash example to ``val``: one candidate per
source is held back until the source ends, so memory stays bounded (the dedup keys and the eval
index are the only state that grows).
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import xxhash
from pydantic import BaseModel, Field

from llmstack_dagster.core.chat.conversation import Conversation
from llmstack_dagster.core.chat.decontamination import (
    EVAL_SETS,
    MIN_TOKENS,
    NGRAM,
    DecontaminationIndex,
    build_index,
)
from llmstack_dagster.core.chat.sources import DOMAIN, Example, SFTSourceConfig, read_examples
from llmstack_dagster.core.schema import make_drop

STAGE = "sft_conversations"
Split = Literal["train", "val"]
T = TypeVar("T")


class SFTBuildConfig(BaseModel):
    """Split and decontamination settings."""

    val_fraction: float = Field(default=0.05, ge=0, lt=1)
    seed: int = 0
    eval_sets: tuple[str, ...] = EVAL_SETS
    ngram: int = Field(default=NGRAM, ge=1)
    min_tokens: int = Field(default=MIN_TOKENS, ge=1)


def conversation_key(conv: Conversation) -> int:
    """128-bit hash of the normalized turns (NFC, whitespace collapsed; case kept)."""
    parts = []
    for turn in conv.turns:
        text = " ".join(unicodedata.normalize("NFC", turn.content).split())
        parts.append(f"{turn.role}\x1f{text}")
    return xxhash.xxh3_128_intdigest("\x1e".join(parts).encode())


def split_score(conv_id: str, seed: int) -> float:
    """Where the id falls in [0, 1): the seeded hash the split compares to ``val_fraction``."""
    return xxhash.xxh64_intdigest(f"{seed}:{conv_id}".encode()) / 2**64


class SeededSplit(Generic[T]):
    """The split rule over one source's kept items, in stream order: ``val`` when
    :func:`split_score` < ``val_fraction``; the lowest-scoring train candidate is held back
    until :meth:`finish`, which gives it to ``val`` if the source has none and at least one
    other item. Only that one candidate is held, so memory stays bounded."""

    def __init__(self, val_fraction: float, seed: int) -> None:
        self.val_fraction, self.seed = val_fraction, seed
        self.sizes: Counter[str] = Counter()
        self._held: tuple[float, T] | None = None

    def add(self, item_id: str, item: T) -> Iterator[tuple[Split, T]]:
        """The items whose split is now decided (none, this one, or the one held before)."""
        score = split_score(item_id, self.seed)
        if score < self.val_fraction:
            self.sizes["val"] += 1
            yield "val", item
            return
        if self._held is not None and self._held[0] <= score:
            self.sizes["train"] += 1
            yield "train", item
            return
        if self._held is not None:
            self.sizes["train"] += 1
            yield "train", self._held[1]
        self._held = (score, item)

    def finish(self) -> Iterator[tuple[Split, T]]:
        """The held candidate, once the source has ended."""
        if self._held is None:
            return
        split: Split = "val" if self.sizes["val"] == 0 and self.sizes["train"] >= 1 else "train"
        self.sizes[split] += 1
        yield split, self._held[1]
        self._held = None


@dataclass(frozen=True)
class Kept:
    split: Split
    conversation: Conversation


@dataclass
class SFTBuild:
    """Everything :func:`build_conversations` produced."""

    kept: list[Kept] = field(default_factory=list)
    drops: list[dict[str, Any]] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    index_summary: dict[str, dict[str, int]] = field(default_factory=dict)


def _drop(ex: Example, reason: str, detail: str) -> dict[str, Any]:
    conv = ex.conversation
    sample = conv.turns[0].content if conv.turns else None
    return make_drop(
        stage=STAGE,
        domain=DOMAIN,
        source=conv.source,
        id=conv.id,
        locator=ex.locator,
        reason=reason,
        detail=detail,
        sample=sample,
    )


class _Pipeline:
    """Decontamination, exact dedup and the split over a stream of sources."""

    def __init__(self, index: DecontaminationIndex, config: SFTBuildConfig) -> None:
        self.index, self.config = index, config
        self.seen: dict[int, str] = {}  # conversation key -> id of the kept copy
        self.counts: dict[str, Counter[str]] = {}

    def _filter(self, ex: Example, counts: Counter[str]) -> dict[str, Any] | None:
        conv = ex.conversation
        hit = self.index.find("\n".join(t.content for t in conv.turns))
        if hit is not None:
            counts["contaminated"] += 1
            counts[f"contaminated:{hit.eval_set}"] += 1
            detail = f"shares a {len(hit.ngram.split())}-gram with {hit.eval_set}: {hit.ngram!r}"
            return _drop(ex, "contaminated", detail)
        key = conversation_key(conv)
        if key in self.seen:
            counts["duplicate"] += 1
            return _drop(ex, "duplicate", f"duplicate of {self.seen[key]}")
        self.seen[key] = conv.id
        return None

    def source(self, cfg: SFTSourceConfig) -> Iterator[Kept | dict[str, Any]]:
        counts = self.counts.setdefault(cfg.name, Counter())
        for key in ("read", "quarantined", "contaminated", "duplicate", "train", "val"):
            counts[key] += 0
        splitter: SeededSplit[Conversation] = SeededSplit(
            self.config.val_fraction, self.config.seed
        )
        for item in read_examples(cfg):
            counts["read"] += 1
            if isinstance(item, dict):
                counts["quarantined"] += 1
                counts[f"quarantined:{item['reason']}"] += 1
                yield item
                continue
            dropped = self._filter(item, counts)
            if dropped is not None:
                yield dropped
                continue
            for split, conv in splitter.add(item.conversation.id, item.conversation):
                counts[split] += 1
                yield Kept(split, conv)
        for split, conv in splitter.finish():
            counts[split] += 1
            yield Kept(split, conv)


def stream_conversations(
    sources: list[SFTSourceConfig], index: DecontaminationIndex, config: SFTBuildConfig
) -> tuple[Iterator[Kept | dict[str, Any]], dict[str, Counter[str]]]:
    """A lazy stream of kept conversations and drop rows (quarantine rows have stage
    ``sft_sources``), and the per-source counts it fills as it is consumed."""
    pipeline = _Pipeline(index, config)

    def stream() -> Iterator[Kept | dict[str, Any]]:
        for cfg in sources:
            yield from pipeline.source(cfg)

    return stream(), pipeline.counts


def build_conversations(
    sources: list[SFTSourceConfig], data_dir: Path, config: SFTBuildConfig | None = None
) -> SFTBuild:
    """Read, decontaminate against the eval sets under ``data_dir``, dedup and split."""
    config = config or SFTBuildConfig()
    index = build_index(Path(data_dir), config.eval_sets, config.ngram, config.min_tokens)
    stream, counts = stream_conversations(sources, index, config)
    out = SFTBuild(counts=counts, index_summary=index.summary())
    for item in stream:
        if isinstance(item, Kept):
            out.kept.append(item)
        elif item["stage"] == STAGE:
            out.drops.append(item)
        else:
            out.quarantine.append(item)
    return out
