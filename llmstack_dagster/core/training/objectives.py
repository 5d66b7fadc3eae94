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
