"""The DPO-family and Bradley–Terry losses: hand arithmetic, gradients, TRL parity."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from llmstack_dagster.core.posttraining.preference_losses import (
    PreferenceLossConfig,
    preference_loss,
    reward_loss,
)

GOLDEN = Path(__file__).parent / "golden" / "trl_preference_losses.json"

# three pairs: (policy_chosen, policy_rejected, ref_chosen, ref_rejected, chosen_n, rejected_n)
PAIRS = [
    (-10.0, -14.0, -11.0, -12.0, 5, 8),  # Δ = 1 - (-2) = 3
    (-20.0, -15.0, -18.0, -16.0, 10, 4),  # Δ = -2 - 1 = -3
    (-6.0, -9.0, -6.5, -9.5, 3, 6),  # Δ = 0.5 - 0.5 = 0
]


def _tensors(pairs=PAIRS):
    cols = list(zip(*pairs, strict=True))
    logps = [torch.tensor(c, dtype=torch.float64) for c in cols[:4]]
    return (*logps, torch.tensor(cols[4]), torch.tensor(cols[5]))


def _loss(loss: str, beta: float = 0.1, eps: float = 0.0, pairs=PAIRS) -> list[float]:
    cfg = PreferenceLossConfig(loss=loss, beta=beta, label_smoothing=eps)
    losses, _ = preference_loss(cfg, *_tensors(pairs))
    return losses.tolist()


def _log_sigmoid(x: float) -> float:
    return -math.log(1 + math.exp(-x))


DELTAS = [3.0, -3.0, 0.0]
# Δ̄: each log-ratio over its reply's token count
DELTAS_BAR = [1 / 5 - (-2) / 8, -2 / 10 - 1 / 4, 0.5 / 3 - 0.5 / 6]


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_sigmoid_by_hand(beta: float) -> None:
    expected = [-_log_sigmoid(beta * d) for d in DELTAS]
    assert _loss("sigmoid", beta) == pytest.approx(expected, abs=1e-12)
    assert expected[2] == pytest.approx(math.log(2))  # Δ = 0: log 2 whatever β


@pytest.mark.parametrize(
    ("loss", "beta", "eps"), [("sigmoid", 0.1, 0.1), ("conservative", 0.5, 0.3)]
)
def test_conservative_by_hand(loss: str, beta: float, eps: float) -> None:
    expected = [-(1 - eps) * _log_sigmoid(beta * d) - eps * _log_sigmoid(-beta * d) for d in DELTAS]
    assert _loss(loss, beta, eps) == pytest.approx(expected, abs=1e-12)
    # the conservative loss with ε = 0 is plain DPO
    assert _loss("conservative", beta) == pytest.approx(_loss("sigmoid", beta), abs=1e-15)


@pytest.mark.parametrize(("beta", "eps"), [(0.1, 0.0), (0.1, 0.1), (0.5, 0.25)])
def test_robust_by_hand(beta: float, eps: float) -> None:
    expected = [
        ((1 - eps) * -_log_sigmoid(beta * d) + eps * _log_sigmoid(-beta * d)) / (1 - 2 * eps)
        for d in DELTAS
    ]
    assert _loss("robust", beta, eps) == pytest.approx(expected, abs=1e-12)
    if eps:  # differs from cDPO: the flipped term is subtracted, and rescaled
        assert _loss("robust", beta, eps)[0] != pytest.approx(_loss("conservative", beta, eps)[0])


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_ipo_by_hand(beta: float) -> None:
    expected = [(d - 1 / (2 * beta)) ** 2 for d in DELTAS_BAR]
    assert _loss("ipo", beta) == pytest.approx(expected, abs=1e-12)
    # written out for β = 0.1, pair 0: (0.2 + 0.25 - 5)² = 20.7025
    if beta == 0.1:
        assert _loss("ipo", beta)[0] == pytest.approx(20.7025, abs=1e-12)


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_hinge_by_hand(beta: float) -> None:
    expected = [max(0.0, 1 - beta * d) for d in DELTAS]
    assert _loss("hinge", beta) == pytest.approx(expected, abs=1e-12)
    assert _loss("hinge", 0.5)[0] == 0.0  # βΔ = 1.5 > 1: past the margin, no loss


def test_hinge_zero_past_margin_only() -> None:
    assert _loss("hinge", 0.25)[0] == pytest.approx(0.25)  # 1 - 0.75


@pytest.mark.parametrize("beta", [5.0, 0.5])
def test_dpo_norm_by_hand(beta: float) -> None:
    expected = [-_log_sigmoid(beta * d) for d in DELTAS_BAR]
    assert _loss("dpo_norm", beta) == pytest.approx(expected, abs=1e-12)


def test_length_normalized_losses_need_token_counts() -> None:
    pc, pr, rc, rr, _, _ = _tensors()
    for loss in ("ipo", "dpo_norm"):
        with pytest.raises(ValueError, match="tokens"):
            preference_loss(PreferenceLossConfig(loss=loss), pc, pr, rc, rr)
    # the others do not use them
    losses, _ = preference_loss(PreferenceLossConfig(), pc, pr, rc, rr)
    assert losses.shape == (3,)


def test_metrics_by_hand() -> None:
    cfg = PreferenceLossConfig(beta=0.5)
    pc, pr, rc, rr, nc, nr = _tensors()
    _, m = preference_loss(cfg, pc, pr, rc, rr, nc, nr)
    assert m["rewards/chosen"].tolist() == pytest.approx([0.5, -1.0, 0.25])
    assert m["rewards/rejected"].tolist() == pytest.approx([-1.0, 0.5, 0.25])
    assert m["rewards/margin"].tolist() == pytest.approx([1.5, -1.5, 0.0])
    assert m["rewards/accuracy"].tolist() == [1.0, 0.0, 0.0]  # a tie is not correct
    assert m["logps/chosen"].tolist() == [-10.0, -20.0, -6.0]
    assert m["logps/rejected"].tolist() == [-14.0, -15.0, -9.0]
    # the summed log-probabilities give the rewards for the length-normalized losses too
    _, m_norm = preference_loss(PreferenceLossConfig(loss="dpo_norm", beta=0.5), *_tensors())
    assert m_norm["rewards/chosen"].tolist() == pytest.approx([0.5, -1.0, 0.25])
    assert all(not v.requires_grad for v in m.values())


def test_sigmoid_gradient_matches_autograd_and_closed_form() -> None:
    beta = 0.1
    pc, pr, rc, rr, _, _ = _tensors()
    pc1, pr1 = pc.clone().requires_grad_(), pr.clone().requires_grad_()
    losses, _ = preference_loss(PreferenceLossConfig(beta=beta), pc1, pr1, rc, rr)
    losses.sum().backward()
    # the formula written directly, differentiated by autograd
    pc2, pr2 = pc.clone().requires_grad_(), pr.clone().requires_grad_()
    direct = -torch.log(torch.sigmoid(beta * ((pc2 - rc) - (pr2 - rr))))
    direct.sum().backward()
    assert torch.allclose(pc1.grad, pc2.grad, atol=1e-12)
    assert torch.allclose(pr1.grad, pr2.grad, atol=1e-12)
    # closed form: d/d log π(c) = −β σ(−βΔ), and the opposite for log π(r)
    closed = [-beta / (1 + math.exp(beta * d)) for d in DELTAS]
    assert pc1.grad.tolist() == pytest.approx(closed, abs=1e-12)
    assert pr1.grad.tolist() == pytest.approx([-g for g in closed], abs=1e-12)


def test_sigmoid_is_stable_at_large_margins() -> None:
    pairs = [(-1.0, -5000.0, -1.0, -1.0, 1, 1), (-5000.0, -1.0, -1.0, -1.0, 1, 1)]
    losses = _loss("sigmoid", 1.0, pairs=pairs)
    assert losses[0] == 0.0 and losses[1] == pytest.approx(4999.0)


def test_config_validation() -> None:
    with pytest.raises(ValidationError):
        PreferenceLossConfig(beta=0.0)
    with pytest.raises(ValidationError):
        PreferenceLossConfig(loss="robust", label_smoothing=0.5)
    for loss in ("ipo", "hinge", "dpo_norm"):
        with pytest.raises(ValidationError, match="label_smoothing"):
            PreferenceLossConfig(loss=loss, label_smoothing=0.1)
    with pytest.raises(ValidationError):
        PreferenceLossConfig(label_smoothing=-0.1)
    with pytest.raises(ValidationError):
        PreferenceLossConfig(loss="kto")
    assert PreferenceLossConfig().model_dump() == {
        "loss": "sigmoid",
        "beta": 0.1,
        "label_smoothing": 0.0,
    }


def test_reward_loss_by_hand() -> None:
    chosen = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)
    rejected = torch.tensor([1.0, 0.5, 0.5], dtype=torch.float64)
    losses, m = reward_loss(chosen, rejected)
    assert losses.tolist() == pytest.approx(
        [math.log(1 + math.exp(-1.0)), math.log(1 + math.exp(1.5)), math.log(2)], abs=1e-12
    )
    assert m["accuracy"].tolist() == [1.0, 0.0, 0.0]
    assert m["margin"].tolist() == [1.0, -1.5, 0.0]
    assert m["chosen"].tolist() == [2.0, -1.0, 0.5] and m["rejected"].tolist() == [1.0, 0.5, 0.5]
    # a margin m: −log σ(r_c − r_r − m); accuracy ignores it
    margin = torch.tensor([1.0, 0.0, -2.0], dtype=torch.float64)
    losses, m = reward_loss(chosen, rejected, margin=margin)
    assert losses.tolist() == pytest.approx(
        [math.log(2), math.log(1 + math.exp(1.5)), math.log(1 + math.exp(-2.0))], abs=1e-12
    )
    assert m["accuracy"].tolist() == [1.0, 0.0, 0.0]
    # centering: + λ (r_c + r_r)² per pair
    losses, _ = reward_loss(chosen, rejected, center_coefficient=0.1)
    base, _ = reward_loss(chosen, rejected)
    assert (losses - base).tolist() == pytest.approx([0.1 * 9.0, 0.1 * 0.25, 0.1 * 1.0])


# ---- parity with TRL ----------------------------------------------------------------------


def _golden() -> dict:
    return json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("case", _golden()["cases"], ids=lambda c: json.dumps(c["config"]))
def test_matches_trl(case: dict) -> None:
    """Our per-pair losses against TRL's own ``DPOTrainer`` loss code on the same float64
    log-probabilities (``sigmoid_norm`` is TRL's name for dpo_norm; TRL 1.x's label-smoothed
    sigmoid survives only as ``aot`` on one pair). Regenerate the golden file with
    ``bash scripts/setup_bench.sh && .bench-venv/bin/python bench/trl_loss_reference.py``."""
    inputs = _golden()["inputs"]
    keys = ("policy_chosen", "policy_rejected", "ref_chosen", "ref_rejected")
    tensors = [torch.tensor(inputs[k], dtype=torch.float64) for k in keys]
    counts = [torch.tensor(inputs[k]) for k in ("chosen_tokens", "rejected_tokens")]
    losses, _ = preference_loss(PreferenceLossConfig(**case["config"]), *tensors, *counts)
    assert losses.tolist() == pytest.approx(case["losses"], abs=1e-6, rel=0)


@pytest.mark.parametrize("case", _golden()["reward_cases"], ids=lambda c: str(c["margin"]))
def test_reward_loss_matches_trl(case: dict) -> None:
    """TRL's ``RewardTrainer.compute_loss`` takes the batch mean of −log σ(r_c − r_r − m) plus
    λ·mean((r_c + r_r)²): the mean of our per-pair loss. Regenerated with the file above."""
    margin = None if case["margin"] is None else torch.tensor(case["margin"], dtype=torch.float64)
    losses, _ = reward_loss(
        torch.tensor(case["r_chosen"], dtype=torch.float64),
        torch.tensor(case["r_rejected"], dtype=torch.float64),
        margin=margin,
        center_coefficient=case["center_rewards_coefficient"] or 0.0,
    )
    assert float(losses.mean()) == pytest.approx(case["batch_mean_loss"], abs=1e-6, rel=0)


def test_golden_covers_every_loss() -> None:
    losses = {c["config"]["loss"] for c in _golden()["cases"]}
    assert losses == {"sigmoid", "conservative", "robust", "ipo", "hinge", "dpo_norm"}
    smoothed = [c for c in _golden()["cases"] if c["config"].get("label_smoothing")]
    assert {c["config"]["loss"] for c in smoothed} >= {"sigmoid", "robust"}
