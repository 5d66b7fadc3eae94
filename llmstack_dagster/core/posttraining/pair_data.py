"""Deterministic, resumable batches of preference pairs (the ``preference_dataset`` folder).

Each epoch visits the pairs of a split in a permutation seeded by ``(seed, epoch)``; a global
batch is ``micro_batch * accum_steps * world`` consecutive pairs of it, split across ranks and
micro-batches as in ``data_loader.TrainBatches``. A micro-batch of B pairs is 2B rows, the B
``prompt + chosen`` rows then the B ``prompt + rejected`` rows (``logprobs.pair_rows``), with:

- ``input_ids``, ``targets`` (2B, T): the reply tokens are the only targets;
- ``last_index`` (2B,): the position of each row's final token (the reward model's readout);
- ``pair_index`` (B,): each pair's row in the split (to look up cached reference values);
- ``reply_tokens`` (2B,): the reply lengths;
- ``label`` (B,), only for pairs with soft labels (a ``label`` column, the probability that the
  chosen reply is better, written by ``ai_preferences``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from llmstack_dagster.core.posttraining.logprobs import pair_rows
from llmstack_dagster.core.posttraining.preference_index import PreferenceIndex
from llmstack_dagster.core.training.data_loader import Batch, EpochOrder, LoaderPosition


class PreferencePairs:
    """The pairs of one split, in file order: ids and token lists."""

    def __init__(self, data_dir: Path, index: PreferenceIndex, split: str = "train") -> None:
        self.pad_id = index.pad_id
        shards = index.split_shards(split)
        if not shards:
            raise ValueError(f"no {split!r} shard in {data_dir}")
        table = pa.concat_tables(pq.read_table(Path(data_dir) / s.path) for s in shards)
        self.ids: list[str] = table.column("id").to_pylist()
        self.prompts: list[list[int]] = table.column("prompt_ids").to_pylist()
        self.chosen: list[list[int]] = table.column("chosen_ids").to_pylist()
        self.rejected: list[list[int]] = table.column("rejected_ids").to_pylist()
        self.labels: list[float] | None = (
            table.column("label").to_pylist() if "label" in table.column_names else None
        )

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, pairs: list[int]) -> Batch:
        """The rows of these pairs (see the module docstring)."""
        prompts = [self.prompts[i] for i in pairs] * 2
        replies = [self.chosen[i] for i in pairs] + [self.rejected[i] for i in pairs]
        input_ids, targets = pair_rows(prompts, replies, self.pad_id)
        lengths = torch.tensor([len(p) + len(r) for p, r in zip(prompts, replies, strict=True)])
        batch = {
            "input_ids": input_ids,
            "targets": targets,
            "last_index": lengths - 2,  # input_ids holds all but the last token
            "pair_index": torch.tensor(pairs, dtype=torch.long),
            "reply_tokens": torch.tensor([len(r) for r in replies]),
        }
        if self.labels is not None:
            batch["label"] = torch.tensor([self.labels[i] for i in pairs], dtype=torch.float32)
        return batch


class PairBatches:
    """The pair stream of one rank, resumable from a :class:`LoaderPosition` over pairs."""

    def __init__(
        self,
        pairs: PreferencePairs,
        micro_batch: int,
        accum_steps: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.pairs, self.micro_batch, self.accum_steps = pairs, micro_batch, accum_steps
        self.seed, self.rank, self.world = seed, rank, world
        self.global_batch = micro_batch * accum_steps * world
        if self.global_batch > len(pairs):
            raise ValueError(f"global batch of {self.global_batch} pairs > {len(pairs)} pairs")
        sizes = [2 * len(p) + len(c) + len(r) for p, c, r in
                 zip(pairs.prompts, pairs.chosen, pairs.rejected, strict=True)]  # fmt: skip
        self.tokens_per_step = int(self.global_batch * np.mean(sizes))  # on average, for tokens/s
        self.position = LoaderPosition()
        self._epoch_order = EpochOrder(len(pairs), seed)

    def next_step(self) -> list[Batch]:
        """This rank's micro-batches for the next optimizer step; advances the position."""
        pos = self.position
        if pos.cursor + self.global_batch > len(self.pairs):
            pos = LoaderPosition(epoch=pos.epoch + 1, cursor=0)
        order = self._epoch_order(pos.epoch)
        micro = []
        for m in range(self.accum_steps):
            start = pos.cursor + (m * self.world + self.rank) * self.micro_batch
            micro.append(self.pairs.batch(order[start : start + self.micro_batch].tolist()))
        self.position = LoaderPosition(epoch=pos.epoch, cursor=pos.cursor + self.global_batch)
        return micro
