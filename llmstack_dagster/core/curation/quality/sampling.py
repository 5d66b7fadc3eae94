"""Seeded reservoir sampling of document texts from shard manifests (bounded memory)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator

from llmstack_dagster.core.storage import ShardManifest, Storage, iter_shard_tables


def iter_texts(storage: Storage, manifests: Iterable[ShardManifest]) -> Iterator[str]:
    """Every document text of the manifests, shard by shard."""
    for manifest in manifests:
        for _, table in iter_shard_tables(storage, manifest.shards, columns=["text"]):
            yield from table.column("text").to_pylist()


class Reservoir:
    """A uniform sample of ``size`` items from a stream (Vitter's algorithm R), seeded."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.items: list[str] = []
        self._seen = 0
        self._rng = random.Random(seed)

    def add(self, item: str) -> None:
        if self._seen < self.size:
            self.items.append(item)
        else:
            j = self._rng.randrange(self._seen + 1)
            if j < self.size:
                self.items[j] = item
        self._seen += 1
