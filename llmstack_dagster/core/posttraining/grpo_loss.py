"""GRPO's pieces as pure tensor functions (Shao et al. 2024, DeepSeekMath, section 4.1).

For each prompt a group of G completions is sampled and rewarded; a completion's advantage is
its reward against the group's, ``(r − mean) / (std + eps)`` (Dr. GRPO, Liu et al. 2025,
drops the division: ``scale_rewards=False``). Every token of a completion carries its
completion's advantage A and is trained with PPO's clipped objective (Schulman et al. 2017)

    loss_t = −min(ρ_t · A, clip(ρ_t, 1 − ε_low, 1 + ε_high) · A) + β · KL_t,
    ρ_t = exp(log π(o_t) − log π_old(o_t)),

where ``KL_t`` is the k3 estimator of KL(π ‖ π_ref) (Schulman 2020, "Approximating KL
divergence"): ``exp(ref − logp) − (ref − logp) − 1``, never negative and unbiased. The loss is
summed over every active token of the global batch and divided by their count (token-level
aggregation, DAPO, Yu et al. 2025). See ``references/grpo.md``.
"""

from __future__ import annotations

import torch

ADVANTAGE_EPS = 1e-4  # added to the group's std (TRL's GRPOTrainer uses the same)


def group_advantages(
    rewards: torch.Tensor, group_size: int, scale: bool = True, eps: float = ADVANTAGE_EPS
) -> torch.Tensor:
    """Per completion: its reward minus its group's mean, divided by the group's standard
    deviation (Bessel-corrected, as ``torch.std``) plus ``eps`` when ``scale``. ``rewards``
    holds consecutive groups of ``group_size`` completions of one prompt each."""
    if rewards.ndim != 1 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not form groups of {group_size}")
    groups = rewards.float().view(-1, group_size)
    centered = groups - groups.mean(dim=1, keepdim=True)
    if scale and group_size > 1:
        centered = centered / (groups.std(dim=1, keepdim=True) + eps)
    return centered.reshape(-1)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per token: ``exp(ref − logp) − (ref − logp) − 1``, the k3 estimate of KL(π ‖ π_ref)."""
    diff = ref_logp - logp
    return torch.exp(diff) - diff - 1


def clipped_token_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    epsilon_low: float,
    epsilon_high: float,
    beta: float = 0.0,
    ref_logp: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per token (B, T): the clipped surrogate loss plus ``beta`` times the k3 KL, and per-token
    metrics ``kl`` (zeros without a reference) and ``clipped`` (1 where the clip was active).
    ``advantages`` (B,) are broadcast over each row's tokens; the caller masks and sums."""
    ratio = torch.exp(logp - old_logp)
    adv = advantages[:, None].to(logp.dtype)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high) * adv
    loss = -torch.min(unclipped, clipped)
    kl = k3_kl(logp, ref_logp) if ref_logp is not None else torch.zeros_like(logp)
    if beta:
        if ref_logp is None:
            raise ValueError("a KL penalty (beta > 0) needs the reference's log-probabilities")
        loss = loss + beta * kl
    return loss, {"kl": kl.detach(), "clipped": (clipped < unclipped).float().detach()}
