"""The online-RL (GRPO) settings of a training run; defaults from DeepSeekMath and TRL."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from llmstack_dagster.core.posttraining.rewards import REWARD_NAMES


class GRPOConfig(BaseModel):
    """GRPO (Shao et al. 2024). A step trains on ``micro_batch_size * grad_accum_steps *
    world`` completions, ``group_size`` per prompt (each rank's share holds whole groups).

    - sampling: ``group_size`` = 8 completions per prompt at temperature 1.0 (TRL's
      ``num_generations`` and ``temperature``), at most ``max_new_tokens`` = 512 tokens (TRL
      1.16's ``max_completion_length``);
    - objective: PPO's clip ε = 0.2 (``epsilon_high``: DAPO's clip-higher, default ε); a k3
      KL penalty to the initial weights with ``beta`` (0.0 as in TRL since v0.19; DeepSeekMath
      used 0.04); ``scale_rewards`` divides advantages by the group's std (False: Dr. GRPO);
      ``iterations`` (μ) optimizer steps per rollout batch, the old policy's log-probabilities
      computed once per batch (μ = 1: the current policy's, detached); ``mask_truncated``
      leaves completions that hit the length limit out of the loss (DAPO's overlong filter);
    - ``rewards``: weights of the rewards (``posttraining/rewards.py``) summed into one;
    - evaluation: greedy answers to ``eval_prompts`` held-out prompts.
    """

    group_size: int = Field(default=8, ge=2)
    temperature: float = Field(default=1.0, gt=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_new_tokens: int = Field(default=512, ge=1)
    epsilon: float = Field(default=0.2, gt=0.0, lt=1.0)
    epsilon_high: float | None = Field(default=None, gt=0.0)
    beta: float = Field(default=0.0, ge=0.0)
    scale_rewards: bool = True
    iterations: int = Field(default=1, ge=1)
    mask_truncated: bool = False
    rewards: dict[str, float] = Field(default_factory=lambda: {"gsm8k": 1.0, "format": 0.1})
    generation_batch_size: int = Field(default=64, ge=1)
    eval_prompts: int = Field(default=64, ge=0)

    @field_validator("rewards")
    @classmethod
    def _known_rewards(cls, rewards: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(rewards) - set(REWARD_NAMES))
        if unknown or not rewards:
            raise ValueError(f"rewards must name some of {REWARD_NAMES}; unknown: {unknown}")
        return rewards

    @property
    def clip_high(self) -> float:
        return self.epsilon if self.epsilon_high is None else self.epsilon_high
