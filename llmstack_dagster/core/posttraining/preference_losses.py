"""The DPO family and the Bradley–Terry reward-model loss, as pure tensor functions.

Inputs are per-pair sequence log-probabilities (B,): the policy's and the frozen reference's
for the chosen and the rejected reply (``logprobs.sequence_logprobs``), and for the
length-normalized losses the replies' token counts. With

    Δ = (log π(c) − log π_ref(c)) − (log π(r) − log π_ref(r))

every loss is a function of Δ (or of Δ̄, the same with each log-probability divided by its
reply's token count) and returns one value per pair; the caller takes the mean. See
``references/dpo.md`` for the sources and defaults.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field, model_validator

PreferenceLoss = Literal["sigmoid", "conservative", "robust", "ipo", "hinge", "dpo_norm"]
SMOOTHED = ("sigmoid", "conservative", "robust")
LENGTH_NORMALIZED = ("ipo", "dpo_norm")
SOFT_LABELLED = ("sigmoid", "conservative", "dpo_norm")  # the losses that take soft labels


class PreferenceLossConfig(BaseModel):
    """Which DPO-family loss, its β and its label smoothing ε.

    - ``sigmoid``: DPO (Rafailov et al. 2023), −log σ(βΔ); β = 0.1. With ε > 0 it is cDPO.
    - ``conservative``: cDPO (Mitchell 2023), −(1−ε)·log σ(βΔ) − ε·log σ(−βΔ): the DPO loss
      under labels flipped with probability ε.
    - ``robust``: rDPO (Chowdhury et al. 2024), [−(1−ε)·log σ(βΔ) + ε·log σ(−βΔ)] / (1−2ε):
      an unbiased estimate of the clean-label loss under flip rate ε < 0.5.
    - ``ipo``: IPO (Azar et al. 2023), (Δ̄ − 1/(2β))² on length-averaged log-probabilities
      (as TRL); here β is IPO's τ.
    - ``hinge``: SLiC-HF (Zhao et al. 2023), relu(1 − βΔ).
    - ``dpo_norm``: Tulu 3's length-normalized DPO, −log σ(β·Δ̄); Tulu 3 uses β = 5.
    """

    loss: PreferenceLoss = "sigmoid"
    beta: float = Field(default=0.1, gt=0.0)
    label_smoothing: float = Field(default=0.0, ge=0.0, le=0.5)

    @model_validator(mode="after")
    def _check_smoothing(self) -> PreferenceLossConfig:
        if self.label_smoothing > 0 and self.loss not in SMOOTHED:
            raise ValueError(f"label_smoothing applies to {SMOOTHED} only, not {self.loss!r}")
        if self.loss == "robust" and self.label_smoothing >= 0.5:
            raise ValueError("robust DPO needs label_smoothing in [0, 0.5)")
        return self


def _margin(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Δ and the two log-ratios log π − log π_ref of the chosen and the rejected reply."""
    chosen = policy_chosen - ref_chosen
    rejected = policy_rejected - ref_rejected
    return chosen - rejected, chosen, rejected


def preference_loss(
    cfg: PreferenceLossConfig,
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    chosen_tokens: torch.Tensor | None = None,
    rejected_tokens: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-pair losses (B,) and per-pair metrics (detached).

    ``labels``: soft labels p = P(chosen is better) (AI feedback, ``feedback.py``), for the
    sigmoid family: the loss is −(p'·log σ(z) + (1−p')·log σ(−z)) with the label smoothed as
    p' = (1−ε)·p + ε·(1−p); at p = 1 it is the loss above. None: every label is 1.

    Metrics: ``rewards/chosen`` = β(log π(c) − log π_ref(c)), ``rewards/rejected`` likewise,
    ``rewards/margin`` (chosen − rejected), ``rewards/accuracy`` (1.0 where chosen > rejected),
    ``logps/chosen`` and ``logps/rejected`` (the policy's summed log-probabilities). The
    rewards always use the summed log-probabilities, also for the length-normalized losses
    (``ipo``, ``dpo_norm``), as TRL 1.x logs them (open-instruct logs the averaged ones for
    ``dpo_norm``). Token counts are clamped to at least 1, as in TRL.
    """
    beta, eps = cfg.beta, cfg.label_smoothing
    delta, chosen_ratio, rejected_ratio = _margin(
        policy_chosen, policy_rejected, ref_chosen, ref_rejected
    )
    if cfg.loss in LENGTH_NORMALIZED:
        if chosen_tokens is None or rejected_tokens is None:
            raise ValueError(f"{cfg.loss!r} needs chosen_tokens and rejected_tokens")
        n_chosen = chosen_tokens.to(chosen_ratio.dtype).clamp(min=1.0)
        n_rejected = rejected_tokens.to(rejected_ratio.dtype).clamp(min=1.0)
        delta = chosen_ratio / n_chosen - rejected_ratio / n_rejected  # Δ̄
    z = beta * delta
    if labels is not None:
        if cfg.loss not in SOFT_LABELLED:
            raise ValueError(f"soft labels apply to {SOFT_LABELLED}, not {cfg.loss!r}")
        target = (1 - eps) * labels.to(z.dtype) + eps * (1 - labels.to(z.dtype))
        losses = -target * F.logsigmoid(z) - (1 - target) * F.logsigmoid(-z)
    elif cfg.loss in SOFT_LABELLED:
        losses = -(1 - eps) * F.logsigmoid(z) - eps * F.logsigmoid(-z)
    elif cfg.loss == "robust":
        losses = (-(1 - eps) * F.logsigmoid(z) + eps * F.logsigmoid(-z)) / (1 - 2 * eps)
    elif cfg.loss == "ipo":
        losses = (delta - 1 / (2 * beta)) ** 2
    elif cfg.loss == "hinge":
        losses = F.relu(1 - z)
    else:  # pragma: no cover - the Literal rules it out
        raise ValueError(f"unknown preference loss {cfg.loss!r}")
    chosen_reward = (beta * chosen_ratio).detach()
    rejected_reward = (beta * rejected_ratio).detach()
    metrics = {
        "rewards/chosen": chosen_reward,
        "rewards/rejected": rejected_reward,
        "rewards/margin": chosen_reward - rejected_reward,
        "rewards/accuracy": (chosen_reward > rejected_reward).to(chosen_reward.dtype),
        "logps/chosen": policy_chosen.detach(),
        "logps/rejected": policy_rejected.detach(),
    }
    return losses, metrics


def reward_loss(
    r_chosen: torch.Tensor,
    r_rejected: torch.Tensor,
    margin: torch.Tensor | None = None,
    center_coefficient: float = 0.0,
    labels: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Bradley–Terry reward-model loss per pair (B,) and its metrics (detached).

    loss = −log σ(r_c − r_r − m) + λ·(r_c + r_r)², with ``margin`` m (Llama 2's preference
    margin; none: 0) and λ = ``center_coefficient`` (TRL's ``center_rewards_coefficient``,
    Eisenstein et al. 2023: pulls the rewards towards mean zero). The batch mean of this equals
    TRL's ``RewardTrainer`` loss, which adds λ·mean((r_c + r_r)²) to the mean log-sigmoid term.
    With soft ``labels`` p = P(chosen is better) (AI feedback) the log-sigmoid term is the
    cross-entropy to p, −p·log σ(d) − (1−p)·log σ(−d) (Bai et al. 2022 train their preference
    model on such soft labels); p = 1 is the loss above.
    Metrics: ``accuracy`` (1.0 where r_c > r_r), ``margin`` (r_c − r_r), ``chosen``,
    ``rejected``.
    """
    diff = r_chosen - r_rejected
    shifted = diff if margin is None else diff - margin
    losses = -F.logsigmoid(shifted)
    if labels is not None:
        p = labels.to(shifted.dtype)
        losses = p * losses - (1 - p) * F.logsigmoid(-shifted)
    if center_coefficient:
        losses = losses + center_coefficient * (r_chosen + r_rejected) ** 2
    metrics = {
        "accuracy": (diff > 0).to(r_chosen.dtype).detach(),
        "margin": diff.detach(),
        "chosen": r_chosen.detach(),
        "rejected": r_rejected.detach(),
    }
    return losses, metrics
