"""Deterministic, resumable batches of SFT conversations (the ``sft_index`` dataset).

Each epoch visits the conversations in a permutation seeded by ``(seed, epoch)`` and lays
them into rows of ``seq_len + 1`` tokens: with packing, greedily, whole conversations back to
back until the next one does not fit; without, one per row. The rest of a row is ``pad_id``.
Rows are the unit of the position (epoch, row cursor) and of the split across ranks and
micro-batches, exactly as in ``data_loader.TrainBatches``.

A batch holds ``input_ids`` (row[:-1]), next-token ``targets`` (row[1:], ``IGNORE_INDEX``
where the target's loss_mask is 0, across a conversation boundary and on padding),
``position_ids`` (restarting at 0 per conversation) and ``segment_ids`` (1..k for the row's
conversations, 0 for padding), all (micro_batch, seq_len) int64.

The split's token ids and loss masks are held in memory (int32 + int8 per token: fine at SFT
scale).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from llmstack_dagster.core.chat.sft_index import SFTIndex
from llmstack_dagster.core.models.loss import IGNORE_INDEX
from llmstack_dagster.core.training.data_loader import Batch, LoaderPosition


class SFTConversations:
    """The conversations of one split, as flat token and loss-mask arrays with offsets."""

    def __init__(self, data_dir: Path, index: SFTIndex, split: str = "train") -> None:
        self.pad_id, self.max_len = index.pad_id, index.max_len
        ids, masks = [], []
        for shard in index.split_shards(split):
            table = pq.read_table(Path(data_dir) / shard.path, columns=["input_ids", "loss_mask"])
            if not pc.all(
                pc.equal(
                    pc.list_value_length(table["input_ids"]),
                    pc.list_value_length(table["loss_mask"]),
                )
            ).as_py():
                raise ValueError(f"{shard.path}: input_ids and loss_mask lengths differ")
            ids.append(table["input_ids"])
            masks.append(table["loss_mask"])
        if not ids:
            raise ValueError(f"no {split!r} shard in {data_dir}")
        lengths = np.concatenate([pc.list_value_length(c).to_numpy() for c in ids])
        self.offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
        self.tokens = np.concatenate([pc.list_flatten(c).to_numpy() for c in ids])
        self.loss_mask = np.concatenate([pc.list_flatten(c).to_numpy() for c in masks]) != 0

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def pack_rows(lengths: np.ndarray, order: np.ndarray, row_len: int) -> list[list[int]]:
    """Greedy packing of the conversations in ``order`` into rows of at most ``row_len``."""
    rows: list[list[int]] = []
    used = row_len
    for conv in order.tolist():
        if used + lengths[conv] > row_len:
            rows.append([])
            used = 0
        rows[-1].append(conv)
        used += int(lengths[conv])
    return rows


class SFTBatches:
    """The SFT batch stream of one rank, resumable from a :class:`LoaderPosition` over rows."""

    def __init__(
        self,
        conversations: SFTConversations,
        seq_len: int,
        micro_batch: int,
        accum_steps: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        position: LoaderPosition | None = None,
        packing: bool = True,
    ) -> None:
        longest = int(conversations.lengths.max(initial=0))
        if max(conversations.max_len, longest) > seq_len + 1:
            raise ValueError(
                f"conversations of up to {max(conversations.max_len, longest)} tokens do not "
                f"fit rows of seq_len + 1 = {seq_len + 1}: raise seq_len or re-render"
            )
        self.conversations, self.seq_len, self.packing = conversations, seq_len, packing
        self.micro_batch, self.accum_steps = micro_batch, accum_steps
        self.seed, self.rank, self.world = seed, rank, world
        self.global_batch = micro_batch * accum_steps * world
        self.tokens_per_step = self.global_batch * seq_len
        self.position = position or LoaderPosition()
        self._rows_epoch = -1
        self._rows: list[list[int]] = []
        self._epoch_rows(self.position.epoch)

    def _epoch_rows(self, epoch: int) -> list[list[int]]:
        if epoch != self._rows_epoch:
            conv = self.conversations
            order = np.random.default_rng([self.seed, epoch]).permutation(len(conv))
            if self.packing:
                rows = pack_rows(conv.lengths, order, self.seq_len + 1)
            else:
                rows = [[c] for c in order.tolist()]
            if self.global_batch > len(rows):
                raise ValueError(f"global batch {self.global_batch} > {len(rows)} rows")
            self._rows, self._rows_epoch = rows, epoch
        return self._rows

    def next_step(self) -> list[Batch]:
        """This rank's micro-batches for the next optimizer step; advances the position."""
        pos = self.position
        if pos.cursor + self.global_batch > len(self._epoch_rows(pos.epoch)):
            pos = LoaderPosition(epoch=pos.epoch + 1, cursor=0)
        rows = self._epoch_rows(pos.epoch)
        micro = []
        for m in range(self.accum_steps):
            start = pos.cursor + (m * self.world + self.rank) * self.micro_batch
            micro.append(self._batch(rows[start : start + self.micro_batch]))
        self.position = LoaderPosition(epoch=pos.epoch, cursor=pos.cursor + self.global_batch)
        return micro

    def _batch(self, rows: list[list[int]]) -> Batch:
        cols = zip(*(self._row(convs) for convs in rows), strict=True)
        keys = ("input_ids", "targets", "position_ids", "segment_ids")
        return {k: torch.from_numpy(np.stack(col)) for k, col in zip(keys, cols, strict=True)}

    def _row(self, convs: list[int]) -> tuple[np.ndarray, ...]:
        conv, row_len = self.conversations, self.seq_len + 1
        ids = np.full(row_len, conv.pad_id, dtype=np.int64)
        mask = np.zeros(row_len, dtype=bool)
        seg = np.zeros(row_len, dtype=np.int64)
        pos = np.zeros(row_len, dtype=np.int64)
        at = 0
        for k, c in enumerate(convs, start=1):
            a, b = conv.offsets[c], conv.offsets[c + 1]
            n = int(b - a)
            ids[at : at + n], mask[at : at + n] = conv.tokens[a:b], conv.loss_mask[a:b]
            seg[at : at + n], pos[at : at + n] = k, np.arange(n)
            at += n
        pos[at:] = np.arange(row_len - at)
        trained = mask[1:] & (seg[1:] == seg[:-1]) & (seg[1:] != 0)
        targets = np.where(trained, ids[1:], IGNORE_INDEX)
        return ids[:-1], targets, pos[:-1], seg[:-1]
