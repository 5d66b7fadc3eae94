"""Rewards for online RL, pluggable and combined with weights.

Each reward scores a batch of completions and returns one value per completion, NaN where it
does not apply (the GSM8K reward to a prompt without a reference answer, the safety reward to
a prompt that is neither harmful nor safe). The total is the weighted sum of the rewards that
apply (TRL's GRPOTrainer combines its reward functions the same way); a completion no reward
applies to gets 0 and is counted as ``unrewarded``.

- ``gsm8k``: 1 when the completion's final answer equals the reference (GSM8K exact match,
  ``evaluation/metrics.gsm8k_correct``), else 0.
- ``format``: 1 when the completion ends its turn with a final line ``#### <number>``, the
  GSM8K convention the math prompts ask for, else 0.
- ``safety``: from the evaluation's refusal classifier, P(refusal) for a harmful prompt and
  1 − P(refusal) for a safe one.
- ``reward_model``: the trained reward model's score of ``prompt + completion``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from llmstack_dagster.core.chat.conversation import Turn
from llmstack_dagster.core.evaluation.metrics import gsm8k_correct
from llmstack_dagster.core.evaluation.refusal import RefusalClassifier
from llmstack_dagster.core.models.generation import Autocast
from llmstack_dagster.core.models.reward import RewardModel
from llmstack_dagster.core.posttraining.logprobs import pair_rows

REWARD_NAMES = ("gsm8k", "format", "safety", "reward_model")
_FINAL_ANSWER = re.compile(r"(?:^|\n)\s*####\s*-?\$?\d[\d,]*(?:\.\d+)?\s*$")


@dataclass(frozen=True)
class RLPrompt:
    """A prompt of the RL prompt set: ``answer`` is a verifiable final answer ("" none),
    ``kind`` is ``harmful`` or ``safe`` for the safety reward ("" neither)."""

    id: str
    source: str
    turns: tuple[Turn, ...]
    answer: str = ""
    kind: str = ""


@dataclass(frozen=True)
class Completions:
    """Sampled completions, one entry per completion (a group repeats its prompt).
    ``completion_ids`` end with the end-of-turn id unless the completion was ``truncated``."""

    prompts: list[RLPrompt]
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    texts: list[str]
    truncated: list[bool]

    def __len__(self) -> int:
        return len(self.prompts)


def reward_applies(name: str, prompt: RLPrompt) -> bool:
    """Whether the reward ``name`` scores completions of ``prompt``."""
    if name in ("gsm8k", "format"):
        return bool(prompt.answer)
    if name == "safety":
        return prompt.kind in ("harmful", "safe")
    return True  # the reward model scores every completion


class Reward(Protocol):
    name: str

    def score(self, completions: Completions) -> np.ndarray: ...


class AnswerMatch:
    name = "gsm8k"

    def score(self, completions: Completions) -> np.ndarray:
        return np.array(
            [
                float(gsm8k_correct(text, p.answer)) if reward_applies(self.name, p) else np.nan
                for p, text in zip(completions.prompts, completions.texts, strict=True)
            ]
        )


class FinalAnswerFormat:
    name = "format"

    def score(self, completions: Completions) -> np.ndarray:
        return np.array(
            [
                float(not cut and bool(_FINAL_ANSWER.search(text)))
                if reward_applies(self.name, p)
                else np.nan
                for p, text, cut in zip(
                    completions.prompts, completions.texts, completions.truncated, strict=True
                )
            ]
        )


class SafetyReward:
    name = "safety"

    def __init__(self, classifier: RefusalClassifier) -> None:
        self.classifier = classifier

    def score(self, completions: Completions) -> np.ndarray:
        out = np.full(len(completions), np.nan)
        rows = [i for i, p in enumerate(completions.prompts) if reward_applies(self.name, p)]
        if rows:
            refusal = self.classifier.predict_proba([completions.texts[i] for i in rows])
            harmful = np.array([completions.prompts[i].kind == "harmful" for i in rows])
            out[rows] = np.where(harmful, refusal, 1.0 - refusal)
        return out


class RewardModelScore:
    name = "reward_model"

    def __init__(
        self,
        model: RewardModel,
        pad_id: int,
        batch_size: int = 16,
        autocast: Autocast = nullcontext,
    ) -> None:
        self.model, self.pad_id, self.batch_size, self.autocast = (
            model,
            pad_id,
            batch_size,
            autocast,
        )

    @torch.no_grad()
    def score(self, completions: Completions) -> np.ndarray:
        self.model.eval()
        device = next(self.model.parameters()).device
        scores = []
        for start in range(0, len(completions), self.batch_size):
            prompts = completions.prompt_ids[start : start + self.batch_size]
            replies = [
                ids or [self.pad_id]
                for ids in completions.completion_ids[start : start + self.batch_size]
            ]
            inputs, _ = pair_rows(prompts, replies, self.pad_id)
            last = torch.tensor(
                [len(p) + len(r) - 2 for p, r in zip(prompts, replies, strict=True)]
            )
            with self.autocast():
                scores.append(self.model(inputs.to(device), last.to(device)).float().cpu())
        return torch.cat(scores).numpy().astype(np.float64) if scores else np.zeros(0)


def combine(scores: dict[str, np.ndarray], weights: dict[str, float]) -> tuple[np.ndarray, int]:
    """The weighted sum of the rewards that apply to each completion, and the number of
    completions no reward applied to (their total is 0)."""
    stacked = np.stack([weights[name] * scores[name] for name in weights])
    unrewarded = int(np.isnan(stacked).all(axis=0).sum())
    return np.nansum(stacked, axis=0), unrewarded


def score_all(
    rewards: Sequence[Reward], weights: dict[str, float], completions: Completions
) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """(total per completion, each reward per completion, completions without a reward)."""
    scores = {reward.name: reward.score(completions) for reward in rewards}
    total, unrewarded = combine(scores, weights)
    return total, scores, unrewarded
