"""AI feedback: the multiple-choice preference from fixed log-probabilities, the ensemble, the
chain-of-thought clamp, the position swap and the bias report."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from llmstack_dagster.core.chat.conversation import Turn
from llmstack_dagster.core.posttraining.constitution import load_constitution
from llmstack_dagster.core.posttraining.feedback import (
    FINAL_REQUEST,
    FeedbackConfig,
    FeedbackItem,
    ai_feedback,
    option_probability,
    position_bias,
    seeded_swaps,
)


class ScriptedJudge:
    """Answers option log-probabilities from a fixed list, in the order asked; records what
    it was asked."""

    description = "scripted judge"

    def __init__(self, logprobs: list[tuple[float, float]]) -> None:
        self.logprobs, self.asked, self.generated = logprobs, [], []

    def generate(self, conversations, max_new_tokens, **_) -> list[str]:  # noqa: ANN001, ANN003
        self.generated += list(conversations)
        return [f"reasoning {i}" for i in range(len(conversations))]

    def option_logprobs(self, conversations: Sequence[Sequence[Turn]], options) -> np.ndarray:  # noqa: ANN001
        assert tuple(options) == ("(A)", "(B)")
        self.asked += list(conversations)
        return np.array(self.logprobs[: len(conversations)])


def test_option_probability_is_the_softmax_of_the_two_log_probabilities() -> None:
    got = option_probability(np.array([-1.0, math.log(0.4)]), np.array([-2.0, math.log(0.1)]))
    assert got[0] == pytest.approx(math.exp(-1) / (math.exp(-1) + math.exp(-2)), abs=1e-12)
    assert got[1] == pytest.approx(0.8, abs=1e-12)  # 0.4 / (0.4 + 0.1): renormalized
    assert option_probability(np.array([-1000.0]), np.array([0.0]))[0] == pytest.approx(0.0)


def _items(n: int) -> list[FeedbackItem]:
    return [FeedbackItem(f"p{i}", f"prompt {i}", f"first reply {i}", f"second reply {i}")
            for i in range(n)]  # fmt: skip


def test_ensemble_average_and_position_swap() -> None:
    items = _items(4)
    cfg = FeedbackConfig(principles=2, seed=3, few_shot=False)
    p_a = [0.8, 0.6, 0.3, 0.5, 0.9, 0.7, 0.2, 0.4]  # per (item, principle), in asking order
    judge = ScriptedJudge([(math.log(p), math.log(1 - p)) for p in p_a])
    out = ai_feedback(judge, items, load_constitution(), cfg)
    swaps = seeded_swaps([i.id for i in items], 3)
    assert sum(swaps) == 2 and [f.swapped for f in out] == swaps
    for i, fb in enumerate(out):
        pair = np.array(p_a[2 * i : 2 * i + 2])
        expected = (1 - pair).mean() if swaps[i] else pair.mean()
        assert fb.p_first == pytest.approx(expected, abs=1e-12)
        assert fb.p_a == pytest.approx(pair.tolist(), abs=1e-12)
        assert len(fb.principle_ids) == 2 and len(set(fb.principle_ids)) == 2
        # (A) shows the second reply exactly when swapped
        question = judge.asked[2 * i][-1].content
        a_text = question.split("(A) ")[1].split("\n\n(B)")[0]
        assert a_text == (items[i].second if swaps[i] else items[i].first)


def test_chain_of_thought_is_clamped_and_answers_after_its_reasoning() -> None:
    cfg = FeedbackConfig(principles=1, chain_of_thought=True, seed=0)
    p_a = [0.95, 0.1, 0.55]
    judge = ScriptedJudge([(math.log(p), math.log(1 - p)) for p in p_a])
    out = ai_feedback(judge, _items(3), load_constitution(), cfg)
    assert [f.p_a[0] for f in out] == pytest.approx([0.6, 0.4, 0.55])
    asked = judge.asked[0]
    assert asked[-2] == Turn(role="assistant", content="reasoning 0")
    assert asked[-1].content == FINAL_REQUEST
    assert "step by step" in judge.generated[0][-1].content
    # the few-shot example comes first: its question and its answer
    assert asked[1] == Turn(role="assistant", content="(B)")


def test_position_bias_report() -> None:
    report = position_bias(np.array([0.9, 0.7, 0.6, 0.2]))
    assert report == pytest.approx({"mean_p_a": 0.6, "bias": 0.1, "a_preferred_rate": 0.75})
    assert seeded_swaps([str(i) for i in range(7)], 0).count(True) == 3


def test_clamp_must_contain_one_half() -> None:
    with pytest.raises(ValueError, match="cot_clamp"):
        FeedbackConfig(cot_clamp=(0.6, 0.7))
