"""TRL's own DPO-family and reward-model losses on fixed log-probabilities: the golden file of
``tests/core/posttraining/test_preference_losses.py``.

TRL 1.x has no standalone ``dpo_loss``: the losses live inside ``DPOTrainer._compute_loss``,
which also runs the model. We call that method unbound on a minimal stand-in for the trainer
(the attributes ``DPOTrainer.__init__`` sets from a real ``DPOConfig``), with
``precompute_ref_log_probs`` on so the reference log-probabilities come from the batch, and a
stand-in model whose per-token log-probabilities sum to the fixed sequence log-probability of
each reply. One pair per call, so TRL's batch mean is that pair's loss. Likewise
``RewardTrainer.compute_loss`` with a stand-in model returning fixed rewards (its loss is a
batch mean, so it is recorded per batch).

Our loss -> TRL ``loss_type``: ``sigmoid`` -> ``sigmoid``; ``robust`` -> ``robust``; ``ipo`` ->
``ipo``; ``hinge`` -> ``hinge``; ``dpo_norm`` -> ``sigmoid_norm``. TRL 1.x's ``sigmoid`` ignores
``label_smoothing``; its cDPO expression survives only in ``aot``, which sorts the batch's log
ratios first: with one pair per call nothing is sorted, so ``aot`` is exactly cDPO there.

    .bench-venv/bin/python bench/trl_loss_reference.py
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "core" / "posttraining" / "golden" / "trl_preference_losses.json"

# (policy_chosen, policy_rejected, ref_chosen, ref_rejected, chosen_tokens, rejected_tokens):
# both signs of Δ, a tie, a large margin, short and long replies
PAIRS = [
    (-12.5, -15.0, -13.0, -14.0, 10, 12),
    (-40.25, -22.0, -38.0, -25.5, 31, 17),
    (-7.0, -7.0, -7.0, -7.0, 5, 5),
    (-3.0, -90.0, -10.0, -60.0, 4, 70),
    (-55.5, -54.0, -50.0, -60.0, 44, 48),
    (-1.75, -2.5, -1.5, -2.0, 1, 2),
]

# (our config, TRL loss_type)
CASES = [
    ({"loss": "sigmoid", "beta": 0.1}, "sigmoid"),
    ({"loss": "sigmoid", "beta": 0.5}, "sigmoid"),
    ({"loss": "sigmoid", "beta": 0.1, "label_smoothing": 0.1}, "aot"),
    ({"loss": "conservative", "beta": 0.3, "label_smoothing": 0.25}, "aot"),
    ({"loss": "robust", "beta": 0.1, "label_smoothing": 0.1}, "robust"),
    ({"loss": "robust", "beta": 0.5, "label_smoothing": 0.2}, "robust"),
    ({"loss": "ipo", "beta": 0.1}, "ipo"),
    ({"loss": "ipo", "beta": 0.5}, "ipo"),
    ({"loss": "hinge", "beta": 0.1}, "hinge"),
    ({"loss": "hinge", "beta": 0.5}, "hinge"),
    ({"loss": "dpo_norm", "beta": 5.0}, "sigmoid_norm"),
    ({"loss": "dpo_norm", "beta": 0.5}, "sigmoid_norm"),
]

# reward batches: (r_chosen, r_rejected, margin or None, center_rewards_coefficient or None)
REWARD_CASES = [
    ([1.5, -0.25, 0.0, 3.0], [0.5, 0.75, 0.0, -2.0], None, None),
    ([1.5, -0.25, 0.0, 3.0], [0.5, 0.75, 0.0, -2.0], [0.5, 1.0, 0.0, 2.0], None),
    ([1.5, -0.25, 0.0, 3.0], [0.5, 0.75, 0.0, -2.0], None, 0.01),
    ([1.5, -0.25, 0.0, 3.0], [0.5, 0.75, 0.0, -2.0], [0.5, 1.0, 0.0, 2.0], 0.1),
]


class _Accelerator:
    device = torch.device("cpu")

    @staticmethod
    def gather(t: torch.Tensor) -> torch.Tensor:
        return t

    gather_for_metrics = gather


class _FixedLogprobs(torch.nn.Module):
    """Stands in for a model wrapped by TRL's fused LM head: returns per-token
    log-probabilities whose row sums are the given sequence log-probabilities."""

    def __init__(self, seq_logps: torch.Tensor) -> None:
        super().__init__()
        self.seq_logps = seq_logps

    def forward(self, input_ids: torch.Tensor, **_: object) -> SimpleNamespace:
        rows, width = input_ids.shape[0], input_ids.shape[1] - 1
        log_probs = torch.zeros(rows, width, dtype=self.seq_logps.dtype)
        log_probs[:, 0] = self.seq_logps
        return SimpleNamespace(
            log_probs=log_probs,
            entropy=torch.zeros(rows, width, dtype=log_probs.dtype),
            mean_logits=torch.zeros(rows, width, dtype=log_probs.dtype),
            is_top1=torch.zeros(rows, width, dtype=torch.bool),
        )


def _dpo_stub(args, model: torch.nn.Module) -> SimpleNamespace:
    """The attributes ``DPOTrainer.__init__`` derives from ``args`` that ``_compute_loss`` reads."""
    return SimpleNamespace(
        args=args,
        model=model,
        accelerator=_Accelerator(),
        beta=args.beta,
        precompute_ref_logps=True,
        loss_types=args.loss_type,
        loss_weights=args.loss_weights or [1.0] * len(args.loss_type),
        ld_alpha=args.ld_alpha,
        f_divergence_type=args.f_divergence_type,
        f_alpha_divergence_coef=args.f_alpha_divergence_coef,
        label_smoothing=args.label_smoothing,
        use_weighting=args.use_weighting,
        aux_loss_enabled=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )


def trl_pair_loss(trl_type: str, cfg: dict, pair: tuple, out_dir: str) -> float:
    from trl import DPOConfig, DPOTrainer

    pc, pr, rc, rr, nc, nr = pair
    args = DPOConfig(
        output_dir=out_dir,
        loss_type=[trl_type],
        beta=cfg["beta"],
        label_smoothing=cfg.get("label_smoothing", 0.0),
        precompute_ref_log_probs=True,
        use_cpu=True,
        report_to=[],
    )
    width = max(nc, nr) + 1  # one prompt token, then the reply
    completion_mask = torch.zeros(2, width, dtype=torch.long)
    completion_mask[0, 1 : 1 + nc] = 1
    completion_mask[1, 1 : 1 + nr] = 1
    inputs = {
        "input_ids": torch.ones(2, width, dtype=torch.long),
        "attention_mask": torch.ones(2, width, dtype=torch.long),
        "completion_mask": completion_mask,
        "ref_chosen_logps": torch.tensor([rc], dtype=torch.float64),
        "ref_rejected_logps": torch.tensor([rr], dtype=torch.float64),
    }
    model = _FixedLogprobs(torch.tensor([pc, pr], dtype=torch.float64))
    loss = DPOTrainer._compute_loss(_dpo_stub(args, model), model, inputs, False)
    return float(loss)


def trl_reward_loss(case: tuple, out_dir: str) -> float:
    from trl import RewardConfig, RewardTrainer

    chosen, rejected, margin, center = case
    args = RewardConfig(
        output_dir=out_dir, center_rewards_coefficient=center, use_cpu=True, report_to=[]
    )
    rewards = torch.tensor(chosen + rejected, dtype=torch.float64)[:, None]
    model = SimpleNamespace(training=True)

    def forward(**_: object) -> SimpleNamespace:
        return SimpleNamespace(logits=rewards)

    stub = SimpleNamespace(
        args=args,
        model=model,
        accelerator=_Accelerator(),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )
    inputs = {"attention_mask": torch.ones(2 * len(chosen), 3, dtype=torch.long)}
    if margin is not None:
        inputs["margin"] = torch.tensor(margin, dtype=torch.float64)
    return float(RewardTrainer.compute_loss(stub, forward, inputs))


def main() -> None:
    import trl

    torch.set_default_dtype(torch.float64)
    with tempfile.TemporaryDirectory() as out_dir:
        cases = [
            {
                "config": cfg,
                "trl_loss_type": trl_type,
                "losses": [trl_pair_loss(trl_type, cfg, pair, out_dir) for pair in PAIRS],
            }
            for cfg, trl_type in CASES
        ]
        rewards = [
            {
                "r_chosen": c[0],
                "r_rejected": c[1],
                "margin": c[2],
                "center_rewards_coefficient": c[3],
                "batch_mean_loss": trl_reward_loss(c, out_dir),
            }
            for c in REWARD_CASES
        ]
    keys = ("policy_chosen", "policy_rejected", "ref_chosen", "ref_rejected")
    data = {
        "trl_version": trl.__version__,
        "torch_version": torch.__version__,
        "source": "trl.DPOTrainer._compute_loss and trl.RewardTrainer.compute_loss, float64",
        "command": ".bench-venv/bin/python bench/trl_loss_reference.py",
        "inputs": {
            **{k: [float(p[i]) for p in PAIRS] for i, k in enumerate(keys)},
            "chosen_tokens": [p[4] for p in PAIRS],
            "rejected_tokens": [p[5] for p in PAIRS],
        },
        "cases": cases,
        "reward_cases": rewards,
    }
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {GOLDEN.relative_to(ROOT)} (trl {trl.__version__})")


if __name__ == "__main__":
    main()
