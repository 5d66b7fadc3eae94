"""The online-RL rewards: verifiable, safety, reward model, and their weighted sum."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmstack_dagster.core.chat.conversation import Turn
from llmstack_dagster.core.models.config import ModelConfig
from llmstack_dagster.core.models.reward import RewardModel
from llmstack_dagster.core.posttraining.rewards import (
    AnswerMatch,
    Completions,
    FinalAnswerFormat,
    RewardModelScore,
    RLPrompt,
    SafetyReward,
    combine,
    score_all,
)

ASK = (Turn(role="user", content="q"),)


def completions(prompts: list[RLPrompt], texts: list[str], truncated: list[bool] | None = None):  # noqa: ANN201
    cut = truncated or [False] * len(texts)
    ids = [[5 + i] * (i + 1) for i in range(len(texts))]
    return Completions(prompts, [[1, 2, 3]] * len(texts), ids, texts, cut)


def test_answer_match_and_format_apply_to_prompts_with_an_answer() -> None:
    math = RLPrompt("m", "gsm8k", ASK, answer="1234")
    other = RLPrompt("o", "safe", ASK, kind="safe")
    batch = completions(
        [math, math, math, math, other],
        ["So 1,234 apples.\n#### 1,234", "#### 12", "The answer is 1234", "#### 1234", "hi"],
        [False, False, False, True, False],
    )
    assert AnswerMatch().score(batch)[:4].tolist() == [1.0, 0.0, 1.0, 1.0]
    assert FinalAnswerFormat().score(batch)[:4].tolist() == [1.0, 1.0, 0.0, 0.0]  # cut: no
    assert np.isnan(AnswerMatch().score(batch)[4]) and np.isnan(FinalAnswerFormat().score(batch)[4])


class FixedRefusal:
    def predict_proba(self, answers: list[str]) -> np.ndarray:
        return np.array([0.9 if a.startswith("I can't") else 0.2 for a in answers])


def test_safety_reward_rewards_refusing_harm_and_answering_safe_prompts() -> None:
    harmful = RLPrompt("h", "red_team", ASK, kind="harmful")
    safe = RLPrompt("s", "safe", ASK, kind="safe")
    math = RLPrompt("m", "gsm8k", ASK, answer="3")
    batch = completions(
        [harmful, harmful, safe, safe, math],
        ["I can't help", "Sure, here", "I can't help", "Sure, here", "3"],
    )
    scores = SafetyReward(FixedRefusal()).score(batch)  # type: ignore[arg-type]
    assert scores[:4].tolist() == pytest.approx([0.9, 0.2, 0.1, 0.8])
    assert np.isnan(scores[4])


def test_weighted_sum_skips_rewards_that_do_not_apply() -> None:
    scores = {"gsm8k": np.array([1.0, 0.0, np.nan]), "safety": np.array([np.nan, 0.5, np.nan])}
    total, unrewarded = combine(scores, {"gsm8k": 2.0, "safety": 0.5})
    assert total.tolist() == [2.0, 0.25, 0.0] and unrewarded == 1


def test_reward_model_scores_prompt_plus_completion_as_in_training() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=32,
        d_model=16,
        n_layers=1,
        n_heads=2,
        n_kv_heads=1,
        ffn_hidden=32,
        max_seq_len=32,
    )
    model = RewardModel(cfg).eval()
    prompt = RLPrompt("p", "safe", ASK)
    batch = completions([prompt, prompt, prompt], ["a", "b", "c"])
    scored = RewardModelScore(model, pad_id=0, batch_size=2).score(batch)
    for row in range(3):  # each alone, unpadded, read where the reward model was trained to:
        # the last input position (a pair row's inputs hold all but its final token)
        ids = torch.tensor([[*batch.prompt_ids[row], *batch.completion_ids[row]][:-1]])
        with torch.no_grad():
            alone = model(ids, torch.tensor([ids.shape[1] - 1]))
        assert scored[row] == pytest.approx(float(alone[0]), abs=1e-5)
    total, per_reward, _ = score_all([RewardModelScore(model, 0)], {"reward_model": 1.0}, batch)
    assert total.tolist() == pytest.approx(per_reward["reward_model"].tolist())


def test_training_samples_only_prompts_a_weighted_reward_applies_to() -> None:
    from llmstack_dagster.core.posttraining.grpo_task import rewarded
    from llmstack_dagster.core.training.config import TrainConfig
    from llmstack_dagster.core.training.preflight import TrainingInputError

    prompts = [
        RLPrompt("m", "gsm8k", ASK, answer="3"),
        RLPrompt("h", "red_team", ASK, kind="harmful"),
        RLPrompt("s", "safe", ASK, kind="safe"),
        RLPrompt("x", "other", ASK),
    ]
    ids = [[1], [2], [3], [4]]

    def kept(rewards: dict[str, float], among: list[RLPrompt] = prompts) -> list[str]:
        cfg = TrainConfig(
            data_dir=".", out_dir=".", micro_batch_size=2, rl={"group_size": 2, "rewards": rewards}
        )
        return [p.id for p in rewarded(cfg, among, ids[: len(among)])[0]]

    assert kept({"gsm8k": 1.0, "format": 0.1}) == ["m"]
    assert kept({"gsm8k": 1.0, "safety": 1.0}) == ["m", "h", "s"]
    assert kept({"gsm8k": 1.0, "safety": 0.0, "reward_model": 1.0}) == ["m", "h", "s", "x"]
    with pytest.raises(TrainingInputError, match="have a reward"):
        kept({"gsm8k": 1.0}, prompts[1:])


def test_a_small_evaluation_takes_each_source_in_turn() -> None:
    from llmstack_dagster.core.posttraining.grpo_task import interleaved

    prompts = [
        RLPrompt(f"{source}-{i}", source, ASK)
        for source in ("gsm8k", "red_team", "safe")
        for i in range(3)
    ]
    chosen, ids = interleaved(prompts, [[i] for i in range(9)], 5)
    assert [p.id for p in chosen] == ["gsm8k-0", "red_team-0", "safe-0", "gsm8k-1", "red_team-1"]
    assert ids == [[0], [3], [6], [1], [4]]
