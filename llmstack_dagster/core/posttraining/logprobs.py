"""Sequence log-probabilities of preference pairs: the one place a reply is scored, by the
policy during DPO and by the frozen reference when ``reference_logprobs`` caches it.

A pair is laid out as two rows, ``prompt + chosen`` and ``prompt + rejected``, right-padded;
``targets`` is the next token where it belongs to the reply and ``IGNORE_INDEX`` elsewhere, so
a reply's log-probability is the sum of its tokens' log-probabilities given everything before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from llmstack_dagster.core.models.loss import IGNORE_INDEX

Forward = Callable[..., torch.Tensor]


def pair_rows(
    prompts: Sequence[Sequence[int]],
    replies: Sequence[Sequence[int]],
    pad_id: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids`` and ``targets`` (N, T) for ``prompt_i + reply_i``, right-padded to the
    longest; only the reply's tokens are targets."""
    width = max(len(p) + len(r) for p, r in zip(prompts, replies, strict=True)) - 1
    inputs = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    targets = torch.full((len(prompts), width), IGNORE_INDEX, dtype=torch.long)
    for row, (prompt, reply) in enumerate(zip(prompts, replies, strict=True)):
        sequence = torch.tensor([*prompt, *reply], dtype=torch.long)
        inputs[row, : len(sequence) - 1] = sequence[:-1]
        start = len(prompt) - 1  # the position whose next token is the reply's first
        targets[row, start : len(sequence) - 1] = sequence[len(prompt) :]
    return inputs, targets


def sequence_logprobs(
    forward: Forward, input_ids: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: the summed log-probability of the target tokens (float32, differentiable)
    and their count."""
    nll = forward(input_ids, targets, reduction="none").float()  # 0 where IGNORE_INDEX
    mask = targets != IGNORE_INDEX
    return -(nll * mask).sum(dim=-1), mask.sum(dim=-1)
