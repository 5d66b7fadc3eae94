"""Deterministic batches of packed tokens with an exact, serializable position.

The training stream is cut into non-overlapping windows of ``seq_len + 1`` tokens (inputs
and next-token targets) inside each shard. Each epoch visits all windows in a permutation
seeded by ``(seed, epoch)``. A global batch takes the next ``micro_batch * accum * world``
windows; rank ``r`` gets micro-batch ``m`` at offset ``(m * world + r) * micro_batch``, so
the global batch is the same for any split of it across ranks and accumulation steps.

A batch is a dict of tensors (``input_ids`` and next-token ``targets`` here), the form every
data source of the engine yields and every objective reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel

from llmstack_dagster.core.training.token_shards import TokenShard, TokenShardIndex, read_tokens

Batch = dict[str, torch.Tensor]


class LoaderPosition(BaseModel):
    """Where the next global batch starts: epoch and window offset in its permutation."""

    epoch: int = 0
    cursor: int = 0


class EpochOrder:
    """The order a stream visits its items in: a permutation seeded by ``(seed, epoch)``,
    computed once per epoch."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed = size, seed
        self._epoch, self._order = -1, np.zeros(0, dtype=np.int64)

    def __call__(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._order, self._epoch = rng.permutation(self.size), epoch
        return self._order


class TokenWindows:
    """Random access to the ``seq_len + 1`` windows of a set of shards (memory-mapped)."""

    def __init__(
        self, data_dir: Path, index: TokenShardIndex, shards: list[TokenShard], seq_len: int
    ) -> None:
        self.seq_len = seq_len
        self.arrays = [read_tokens(data_dir, index, s) for s in shards]
        counts = [max(0, (len(a) - 1) // seq_len) for a in self.arrays]
        self.starts = np.cumsum([0, *counts])
        if self.starts[-1] == 0:
            raise ValueError(f"no window of {seq_len + 1} tokens in {len(shards)} shard(s)")

    def __len__(self) -> int:
        return int(self.starts[-1])

    def batch(self, window_ids: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets, each (len(window_ids), seq_len) int64."""
        rows = np.empty((len(window_ids), self.seq_len + 1), dtype=np.int64)
        for row, wid in enumerate(window_ids):
            shard = int(np.searchsorted(self.starts, wid, side="right")) - 1
            offset = (int(wid) - int(self.starts[shard])) * self.seq_len
            rows[row] = self.arrays[shard][offset : offset + self.seq_len + 1]
        tokens = torch.from_numpy(rows)
        return tokens[:, :-1], tokens[:, 1:]


class TrainBatches:
    """The training batch stream of one rank, resumable from a :class:`LoaderPosition`: the
    next-token data source of the engine."""

    def __init__(
        self,
        windows: TokenWindows,
        micro_batch: int,
        accum_steps: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        position: LoaderPosition | None = None,
    ) -> None:
        self.windows, self.micro_batch, self.accum_steps = windows, micro_batch, accum_steps
        self.seed, self.rank, self.world = seed, rank, world
        self.global_batch = micro_batch * accum_steps * world
        self.tokens_per_step = self.global_batch * windows.seq_len
        if self.global_batch > len(windows):
            raise ValueError(f"global batch {self.global_batch} > {len(windows)} windows")
        self.position = position or LoaderPosition()
        self._permutation = EpochOrder(len(windows), seed)

    def next_step(self) -> list[Batch]:
        """This rank's micro-batches for the next optimizer step; advances the position."""
        pos = self.position
        if pos.cursor + self.global_batch > len(self.windows):
            pos = LoaderPosition(epoch=pos.epoch + 1, cursor=0)
        order = self._permutation(pos.epoch)
        micro = []
        for m in range(self.accum_steps):
            start = pos.cursor + (m * self.world + self.rank) * self.micro_batch
            x, y = self.windows.batch(order[start : start + self.micro_batch])
            micro.append({"input_ids": x, "targets": y})
        self.position = LoaderPosition(epoch=pos.epoch, cursor=pos.cursor + self.global_batch)
        return micro
