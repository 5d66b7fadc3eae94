"""GRPO on the engine: its pieces against hand-computed values, a toy environment whose reward
must rise, and exact resume."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from support.rl_toy import grpo_config, warm_started_model, write_toy_prompts
from support.training import kill_after_first_checkpoint, run_entrypoint, write_config

from llmstack_dagster.core.models.loss import IGNORE_INDEX
from llmstack_dagster.core.posttraining.grpo_config import GRPOConfig
from llmstack_dagster.core.posttraining.grpo_loss import (
    clipped_token_loss,
    group_advantages,
    k3_kl,
)
from llmstack_dagster.core.posttraining.grpo_task import GroupRelative
from llmstack_dagster.core.training.engine import train
from llmstack_dagster.core.training.metrics import read_metrics


def test_group_advantages_match_hand_computed_values() -> None:
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    std = math.sqrt(4 * 0.5**2 / 3)  # Bessel-corrected, as torch.std
    expected = [0.5, -0.5, -0.5, 0.5]
    scaled = group_advantages(rewards, 4)
    assert scaled[:4].tolist() == pytest.approx([e / (std + 1e-4) for e in expected])
    assert scaled[4:].tolist() == [0.0] * 4  # a group with one reward teaches nothing
    assert group_advantages(rewards, 4, scale=False)[:4].tolist() == expected  # Dr. GRPO
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(rewards, 3)


def test_clipped_objective_and_k3_kl_match_hand_computed_values() -> None:
    old = torch.tensor([[-1.0, -1.0, -1.0, -1.0]])
    ratios = torch.tensor([[1.5, 1.5, 0.5, 0.5]])
    logp = old + ratios.log()
    ref = torch.tensor([[-2.0, -1.0, -1.0, -1.5]])
    # one row per advantage sign: A = +1 then A = -1
    loss_pos, parts_pos = clipped_token_loss(logp, old, torch.tensor([1.0]), 0.2, 0.2)
    loss_neg, parts_neg = clipped_token_loss(logp, old, torch.tensor([-1.0]), 0.2, 0.2)
    # A > 0: min(1.5, 1.2) = 1.2 (clipped); min(0.5, 0.8) = 0.5
    assert loss_pos[0].tolist() == pytest.approx([-1.2, -1.2, -0.5, -0.5])
    assert parts_pos["clipped"][0].tolist() == [1.0, 1.0, 0.0, 0.0]
    # A < 0: min(-1.5, -1.2) = -1.5; min(-0.5, -0.8) = -0.8 (clipped)
    assert loss_neg[0].tolist() == pytest.approx([1.5, 1.5, 0.8, 0.8])
    assert parts_neg["clipped"][0].tolist() == [0.0, 0.0, 1.0, 1.0]
    # clip-higher: the upper bound moves alone
    wide, _ = clipped_token_loss(logp, old, torch.tensor([1.0]), 0.2, 0.28)
    assert wide[0, 0].item() == pytest.approx(-1.28)
    # k3: exp(ref - logp) - (ref - logp) - 1
    diff = ref - logp
    expected_kl = (diff.exp() - diff - 1)[0]
    assert k3_kl(logp, ref)[0].tolist() == pytest.approx(expected_kl.tolist())
    assert k3_kl(logp, logp).abs().max() == 0  # zero at the reference, never negative
    penalized, parts = clipped_token_loss(logp, old, torch.tensor([1.0]), 0.2, 0.2, 0.04, ref)
    assert (penalized - loss_pos)[0].tolist() == pytest.approx(
        (0.04 * expected_kl).tolist(), abs=1e-6
    )
    assert parts["kl"][0].tolist() == pytest.approx(expected_kl.tolist())
    with pytest.raises(ValueError, match="reference"):
        clipped_token_loss(logp, old, torch.tensor([1.0]), 0.2, 0.2, 0.04, None)


def test_loss_is_a_token_mean_over_the_whole_step() -> None:
    """Two micro-batches of different lengths: the summed shares equal the mean of every
    active token's loss (token-level aggregation), whatever the split."""
    objective = GroupRelative(GRPOConfig(group_size=2))
    nll = {4: torch.tensor([[0.5, 1.0, 2.0, 0.0]]), 2: torch.tensor([[0.3, 0.7]])}

    def forward(input_ids, targets, reduction):  # noqa: ANN001, ANN202
        out = nll[input_ids.shape[1]].clone().requires_grad_()
        return out * (targets != IGNORE_INDEX)

    micro = [
        {
            "input_ids": torch.zeros(1, 4, dtype=torch.long),
            "targets": torch.tensor([[1, 1, 1, IGNORE_INDEX]]),
            "advantages": torch.tensor([2.0]),
        },
        {
            "input_ids": torch.zeros(1, 2, dtype=torch.long),
            "targets": torch.tensor([[1, 1]]),
            "advantages": torch.tensor([-1.0]),
        },
    ]
    denominator = objective.step_denominator(micro)
    assert float(denominator) == 5
    total = sum(objective.loss(forward, b, denominator)[0] for b in micro)
    # ratio 1 at μ = 1: each token's loss is -A
    assert total.item() == pytest.approx((3 * -2.0 + 2 * 1.0) / 5)


@pytest.fixture(scope="module")
def toy(tokenizer_file: Path, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("rl_toy")
    return write_toy_prompts(root / "store", tokenizer_file), warm_started_model(
        root, tokenizer_file
    )


def test_reward_rises_in_the_toy_environment(toy, tmp_path) -> None:
    """From a model that answers with a random digit, 40 GRPO steps on the exact-match reward
    raise the sampled reward and the held-out greedy accuracy."""
    data, init = toy
    train(grpo_config(data, tmp_path / "rl", init), log=lambda _: None)
    rows = read_metrics(tmp_path / "rl" / "metrics.jsonl")
    rewards = [r["train/reward_gsm8k"] for r in rows if r["kind"] == "train"]
    assert len(rewards) == 40
    assert np.mean(rewards[-10:]) > np.mean(rewards[:10]) + 0.05, rewards
    accuracy = [r["val/gsm8k_accuracy"] for r in rows if r["kind"] == "eval"]
    assert len(accuracy) == 3 and accuracy[0] <= 0.25 and accuracy[-1] >= 0.75, accuracy


def losses(out: Path) -> list[tuple[int, float, float, float]]:
    return [
        (r["step"], r["train/loss"], r["train/reward"], r["train/kl"])
        for r in read_metrics(out / "metrics.jsonl")
        if r["kind"] == "train"
    ]


def test_grpo_resumes_exactly_after_a_kill(toy, tmp_path) -> None:
    """μ = 2 steps per rollout (old-policy log-probabilities) and a KL penalty (reference
    log-probabilities): killed after its first checkpoint, the resumed run samples, rewards
    and trains exactly as the uninterrupted one."""
    data, init = toy
    rl = {
        "group_size": 8,
        "max_new_tokens": 3,
        "rewards": {"gsm8k": 1.0, "format": 0.5},
        "eval_prompts": 4,
        "iterations": 2,
        "beta": 0.04,
    }
    cfg = grpo_config(data, tmp_path / "whole", init, max_steps=8, checkpoint_every=4, rl=rl)
    train(cfg, log=lambda _: None)
    killed = tmp_path / "killed"
    config_file = write_config(cfg.model_copy(update={"out_dir": str(killed)}), tmp_path / "k.json")
    kill_after_first_checkpoint(config_file, killed)
    result = run_entrypoint(config_file)
    assert "resumed from" in result.stderr
    whole = losses(tmp_path / "whole")
    assert losses(killed) == whole and len(whole) == 8
    assert any(kl > 0 for _, _, _, kl in whole)  # the policy moved away from the reference


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"micro_batch_size": 6, "grad_accum_steps": 1}, "whole groups of 8"),
        (
            {"max_steps": 9, "rl": {"iterations": 2, "group_size": 8, "max_new_tokens": 3}},
            "multiples of iterations",
        ),
        ({"rl": {"group_size": 8, "max_new_tokens": 60}}, "exceed max_seq_len"),
        (
            {"rl": {"group_size": 8, "max_new_tokens": 3, "rewards": {"safety": 1.0}}},
            "refusal classifier",
        ),
    ],
)
def test_grpo_refuses_inconsistent_settings_before_training(toy, tmp_path, overrides, message):  # noqa: ANN001, ANN201
    from llmstack_dagster.core.training.preflight import TrainingInputError
    from llmstack_dagster.core.training.tasks import check_task_inputs

    data, init = toy
    with pytest.raises(TrainingInputError, match=message):
        check_task_inputs(grpo_config(data, tmp_path, init, **overrides))


def test_two_ranks_sample_and_train_as_one(toy, tmp_path) -> None:
    """Under torchrun (gloo, DDP) each rank samples its share of the step's prompts with the
    same per-completion seeds, and the loss is normalized over both ranks' tokens: the losses
    and rewards equal one process training the same global batch."""
    import shutil
    import subprocess
    import sys

    from support.training import clean_env

    torchrun = Path(sys.executable).with_name("torchrun")
    if shutil.which(str(torchrun)) is None:
        pytest.fail("torchrun is missing from the environment")
    data, init = toy
    single = grpo_config(data, tmp_path / "one", init, max_steps=4, checkpoint_every=4)
    train(single, log=lambda _: None)
    pair = single.model_copy(
        update={"out_dir": str(tmp_path / "two"), "grad_accum_steps": 1, "parallelism": "ddp"}
    )
    command = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "llmstack_dagster.core.training.entrypoint",
        "--config",
        str(write_config(pair, tmp_path / "two.json")),
    ]
    subprocess.run(command, env=clean_env(), check=True, capture_output=True, timeout=300)
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert [r[2] for r in two] == pytest.approx([r[2] for r in one], abs=1e-6)  # same samples
    assert [r[1] for r in two] == pytest.approx([r[1] for r in one], abs=1e-5)
