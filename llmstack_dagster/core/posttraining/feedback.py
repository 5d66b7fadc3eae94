"""AI feedback (the RL-CAI phase of Bai et al. 2022): which of two replies is better, as a soft
label.

The feedback model sees the prompt and the two replies as a multiple-choice question under a
comparison principle of the constitution, and its preference is the normalized probability of
the option ``"(A)"`` against ``"(B)"``::

    P(A) = exp(log p(A)) / (exp(log p(A)) + exp(log p(B)))     (a softmax over the two options)

averaged over ``principles`` principles sampled per pair (an ensemble). With chain of thought
the model first writes its reasoning, then answers; such probabilities are clamped to
[0.4, 0.6], as the paper found them overconfident. Half of the pairs (a seeded choice) show the
second reply as (A), so a preference for a position cancels; the mean P(A) over every judgement
minus 0.5 is the position bias, reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, Field, model_validator

from llmstack_dagster.core.chat.conversation import Turn
from llmstack_dagster.core.posttraining.chat_models import ChatModel
from llmstack_dagster.core.posttraining.constitution import (
    ComparisonExample,
    Constitution,
    sample_ids,
)

OPTIONS = ("(A)", "(B)")
ANSWER_REQUEST = "Answer with (A) or (B) only."
THINK_REQUEST = "Think it through step by step first; end with your answer, (A) or (B)."
FINAL_REQUEST = "So which reply is better? " + ANSWER_REQUEST


class FeedbackConfig(BaseModel):
    """``principles``: comparison principles averaged per pair (the ensemble's K);
    ``chain_of_thought`` with its clamp (Bai et al. 2022: [0.4, 0.6])."""

    principles: int = Field(default=4, ge=1)
    chain_of_thought: bool = False
    cot_clamp: tuple[float, float] = (0.4, 0.6)
    cot_max_new_tokens: int = Field(default=128, ge=1)
    few_shot: bool = True
    seed: int = 0

    @model_validator(mode="after")
    def _clamp_order(self) -> FeedbackConfig:
        low, high = self.cot_clamp
        if not 0.0 <= low <= 0.5 <= high <= 1.0:
            raise ValueError(f"cot_clamp {self.cot_clamp}: need 0 <= low <= 0.5 <= high <= 1")
        return self


@dataclass(frozen=True)
class FeedbackItem:
    id: str
    prompt: str
    first: str
    second: str


@dataclass(frozen=True)
class Feedback:
    id: str
    swapped: bool  # (A) showed the second reply
    principle_ids: list[str]
    p_a: list[float]  # P("(A)") under each principle, clamped with chain of thought
    p_first: float  # the ensemble's probability that the first reply is better


def option_probability(logp_a: np.ndarray, logp_b: np.ndarray) -> np.ndarray:
    """P("(A)") normalized over the two options: a softmax of their log-probabilities."""
    logp_a, logp_b = np.asarray(logp_a, dtype=float), np.asarray(logp_b, dtype=float)
    return np.exp(logp_a - np.logaddexp(logp_a, logp_b))


def seeded_swaps(ids: Sequence[str], seed: int) -> list[bool]:
    """Exactly ``len(ids) // 2`` pairs swapped, chosen by a generator seeded with ``seed``."""
    order = np.random.default_rng(seed).permutation(len(ids))
    swapped = set(order[: len(ids) // 2].tolist())
    return [i in swapped for i in range(len(ids))]


def position_bias(p_a: np.ndarray) -> dict[str, float]:
    """How much the judge favours position (A): its mean P(A) minus 0.5, and how often
    P(A) > 0.5; both over every judgement, swapped or not."""
    p_a = np.asarray(p_a, dtype=float)
    if p_a.size == 0:
        return {"mean_p_a": float("nan"), "bias": float("nan"), "a_preferred_rate": float("nan")}
    return {"mean_p_a": float(p_a.mean()), "bias": float(p_a.mean() - 0.5),
            "a_preferred_rate": float((p_a > 0.5).mean())}  # fmt: skip


def _example_turns(example: ComparisonExample, principle: str) -> list[Turn]:
    question = comparison_text(example.prompt, example.response_a, example.response_b, principle)
    return [Turn(role="user", content=question + "\n\n" + ANSWER_REQUEST),
            Turn(role="assistant", content=f"({example.answer})")]  # fmt: skip


def comparison_text(prompt: str, reply_a: str, reply_b: str, principle: str) -> str:
    return (
        f"Here is a request someone sent to an assistant:\n\n{prompt}\n\n{principle}\n\n"
        f"(A) {reply_a}\n\n(B) {reply_b}"
    )


def comparison_question(
    constitution: Constitution,
    principle_id: str,
    prompt: str,
    reply_a: str,
    reply_b: str,
    few_shot: bool,
    chain_of_thought: bool,
) -> list[Turn]:
    """The multiple-choice question as turns, after the constitution's few-shot examples."""
    text = next(p.text for p in constitution.comparison if p.id == principle_id)
    turns: list[Turn] = []
    if few_shot:
        for example in constitution.few_shot.comparison:
            turns += _example_turns(example, text)
    request = THINK_REQUEST if chain_of_thought else ANSWER_REQUEST
    question = comparison_text(prompt, reply_a, reply_b, text)
    return [*turns, Turn(role="user", content=question + "\n\n" + request)]


def ai_feedback(
    judge: ChatModel,
    items: Sequence[FeedbackItem],
    constitution: Constitution,
    cfg: FeedbackConfig,
) -> list[Feedback]:
    """Each pair's soft label: the probability that its first reply is the better one."""
    swaps = seeded_swaps([item.id for item in items], cfg.seed)
    ids = [p.id for p in constitution.comparison]
    principles = [sample_ids(ids, cfg.principles, cfg.seed, item.id) for item in items]
    questions = []
    for item, swapped, chosen in zip(items, swaps, principles, strict=True):
        a, b = (item.second, item.first) if swapped else (item.first, item.second)
        questions += [comparison_question(constitution, pid, item.prompt, a, b, cfg.few_shot,
                                          cfg.chain_of_thought) for pid in chosen]  # fmt: skip
    if cfg.chain_of_thought:
        reasons = judge.generate(questions, cfg.cot_max_new_tokens)
        final = Turn(role="user", content=FINAL_REQUEST)
        questions = [[*q, Turn(role="assistant", content=r), final]
                     for q, r in zip(questions, reasons, strict=True)]  # fmt: skip
    logp = judge.option_logprobs(questions, OPTIONS)
    p_a = option_probability(logp[:, 0], logp[:, 1]).reshape(len(items), cfg.principles)
    if cfg.chain_of_thought:
        p_a = np.clip(p_a, *cfg.cot_clamp)
    out = []
    for i, item in enumerate(items):
        first = 1.0 - p_a[i] if swaps[i] else p_a[i]
        out.append(Feedback(item.id, swaps[i], principles[i], p_a[i].tolist(), float(first.mean())))
    return out
