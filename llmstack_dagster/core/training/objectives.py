"""Objectives: what a stage optimizes. A batch in, the loss to backpropagate and metrics out.

The engine calls :meth:`Objective.step_denominator` once per optimizer step with every
micro-batch of this rank, then :meth:`Objective.loss` per micro-batch with that denominator,
so an objective can normalize over the whole step (for a masked loss: the global count of
unmasked tokens) rather than per micro-batch. Metrics are summed over the micro-batches and
averaged over ranks by the engine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
import torch.distributed as dist

from llmstack_dagster.core.models.loss import IGNORE_INDEX
from llmstack_dagster.core.training.data_loader import Batch

Forward = Callable[..., torch.Tensor]


class Objective(ABC):
    name: str

    def step_denominator(self, micro_batches: list[Batch]) -> float | torch.Tensor:
        """What each micro-batch's loss is divided by; default: their number (the mean of
        per-micro-batch mean losses)."""
        return len(micro_batches)

    @abstractmethod
    def loss(
        self, forward: Forward, batch: Batch, denominator: float | torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The micro-batch's share of the step loss and its metrics (shares too)."""


class NextToken(Objective):
    """Causal language modelling: mean cross-entropy of each next token (pretraining and
    continued pretraining)."""

    name = "next_token"

    def loss(
        self, forward: Forward, batch: Batch, denominator: float | torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = forward(batch["input_ids"], batch["targets"]) / denominator
        return loss, {"loss": loss.detach()}


class MaskedNextToken(Objective):
    """Supervised fine-tuning: next-token cross-entropy on the unmasked targets only
    (``targets`` of ``IGNORE_INDEX`` are not trained), averaged over every unmasked token of
    the step on all ranks, so the split into micro-batches and ranks does not matter.

    Ranks' gradients (and metrics) are averaged by DDP/FSDP (and the engine), so each rank's
    share is scaled by the world size. Batches may carry ``position_ids`` and ``segment_ids``
    (packed rows). Metrics, once summed over micro-batches and averaged over ranks: ``loss``
    (the step's token mean), ``trained_tokens`` (the step's, all ranks) and ``empty_step``
    (1 when no token of the step is trained: the loss is then 0, never NaN).
    ``step_denominator`` records the step's micro-batch count for that flag.
    """

    name = "sft"

    def __init__(self) -> None:
        self._micro_batches = 1

    def step_denominator(self, micro_batches: list[Batch]) -> torch.Tensor:
        """The step's unmasked target tokens over all micro-batches and ranks (float32)."""
        self._micro_batches = len(micro_batches)
        return step_target_tokens(micro_batches)

    def loss(
        self, forward: Forward, batch: Batch, denominator: float | torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        world = dist.get_world_size() if dist.is_initialized() else 1
        extra = {k: batch[k] for k in ("position_ids", "segment_ids") if k in batch}
        total = forward(batch["input_ids"], batch["targets"], reduction="sum", **extra)
        denominator = torch.as_tensor(denominator, dtype=torch.float32, device=total.device)
        loss = total * world / denominator.clamp_min(1.0)
        trained = (batch["targets"] != IGNORE_INDEX).sum().float() * world
        empty = (denominator == 0).float() / self._micro_batches
        return loss, {"loss": loss.detach(), "trained_tokens": trained, "empty_step": empty}


def step_target_tokens(micro_batches: list[Batch]) -> torch.Tensor:
    """The unmasked target tokens of a step's micro-batches on every rank (float32)."""
    count = torch.zeros((), dtype=torch.int64, device=_reduce_device())
    for batch in micro_batches:
        count += (batch["targets"] != IGNORE_INDEX).sum().to(count.device)
    if dist.is_initialized():
        dist.all_reduce(count, op=dist.ReduceOp.SUM)
    return count.float()


def _reduce_device() -> torch.device:
    """Where a count can be all-reduced: this rank's GPU under NCCL, else the CPU."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
