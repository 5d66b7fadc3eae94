"""Online RL with GRPO as an engine task: the policy trains on its own sampled completions.

Data: the ``rl_prompts`` folder (``rl_prompts.py``) with the reward files the run needs;
the data source is :class:`~llmstack_dagster.core.posttraining.rollouts.Rollouts`, bound to the
engine's model once it is built. Objective: :class:`GroupRelative` (``grpo_loss.py``).
Evaluation, always beside the reward and independent of it (TRL issue #2959: the reward can
saturate while the task collapses): greedy answers to held-out prompts, their rewards, GSM8K
exact match on the held-out math prompts, and with the refusal classifier the refusal rate on
held-out harmful prompts and the over-refusal rate on held-out safe ones.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from llmstack_dagster.core.evaluation.refusal import RefusalClassifier
from llmstack_dagster.core.models.config import ModelConfig
from llmstack_dagster.core.models.generation import Autocast
from llmstack_dagster.core.models.loss import IGNORE_INDEX
from llmstack_dagster.core.models.reward import RewardModel
from llmstack_dagster.core.posttraining.grpo_config import GRPOConfig
from llmstack_dagster.core.posttraining.grpo_loss import clipped_token_loss
from llmstack_dagster.core.posttraining.rewards import (
    AnswerMatch,
    FinalAnswerFormat,
    Reward,
    RewardModelScore,
    RLPrompt,
    SafetyReward,
    reward_applies,
    score_all,
)
from llmstack_dagster.core.posttraining.rl_prompts import (
    RL_INDEX_FILE,
    RLPromptIndex,
    load_rl_index,
    read_rl_prompts,
)
from llmstack_dagster.core.posttraining.rollouts import STAT_PREFIX, Rollouts, Sampler
from llmstack_dagster.core.training.config import TrainConfig
from llmstack_dagster.core.training.data_loader import Batch
from llmstack_dagster.core.training.distributed import DistEnv
from llmstack_dagster.core.training.init_weights import initial_model_config, load_model
from llmstack_dagster.core.training.objectives import Forward, Objective, step_target_tokens
from llmstack_dagster.core.training.preflight import TrainingInputError
from llmstack_dagster.core.training.sft_task import chat_model_task
from llmstack_dagster.core.training.tokenizer import load_tokenizer
from llmstack_dagster.core.training.training_task import TrainingTask

SAMPLE_PROMPTS = 4


class GroupRelative(Objective):
    """The clipped, KL-penalized GRPO loss summed over the step's completion tokens on every
    rank and divided by their count; metrics: ``kl`` and ``clip_ratio`` (token means) and the
    rollout's statistics (``rollouts.Rollouts._stats``)."""

    name = "grpo"

    def __init__(self, rl: GRPOConfig) -> None:
        self.rl = rl

    def step_denominator(self, micro_batches: list[Batch]) -> torch.Tensor:
        return step_target_tokens(micro_batches)

    def loss(
        self, forward: Forward, batch: Batch, denominator: float | torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        targets = batch["targets"]
        logp = -forward(batch["input_ids"], targets, reduction="none").float()
        old = batch["old_logp"] if "old_logp" in batch else logp.detach()
        per_token, parts = clipped_token_loss(
            logp,
            old,
            batch["advantages"],
            self.rl.epsilon,
            self.rl.clip_high,
            self.rl.beta,
            batch.get("ref_logp"),
        )
        mask = (targets != IGNORE_INDEX).float()
        world = dist.get_world_size() if dist.is_initialized() else 1
        scale = world / torch.as_tensor(denominator, device=logp.device).clamp_min(1.0)
        loss = (per_token * mask).sum() * scale
        metrics = {
            "loss": loss.detach(),
            "kl": (parts["kl"] * mask).sum() * scale,
            "clip_ratio": (parts["clipped"] * mask).sum() * scale,
        }
        metrics |= {k[len(STAT_PREFIX) :]: v for k, v in batch.items() if k.startswith(STAT_PREFIX)}
        return loss, metrics


def grpo_inputs(cfg: TrainConfig, world_size: int) -> tuple[RLPromptIndex, ModelConfig]:
    """The checked prompt index and the initial weights' shape: a chat model is required; a
    prompt plus its completion fits the window; the reward files the weights name are there;
    a step holds whole groups; checkpoints fall on rollout boundaries."""
    rl = cfg.rl
    initial = initial_model_config(cfg)
    if initial is None:
        raise TrainingInputError("GRPO starts from a chat model: set init")
    data_dir = Path(cfg.data_dir)
    if not (data_dir / RL_INDEX_FILE).is_file():
        raise TrainingInputError(f"RL prompt index {data_dir / RL_INDEX_FILE} missing")
    index = load_rl_index(data_dir)
    problems = []
    if index.max_prompt_len + rl.max_new_tokens + 1 > initial.max_seq_len:
        problems.append(
            f"prompts of {index.max_prompt_len} tokens + {rl.max_new_tokens} new "
            f"exceed max_seq_len {initial.max_seq_len}"
        )
    if initial.vocab_size < index.vocab_size:
        problems.append(f"model vocab {initial.vocab_size} < tokenizer's {index.vocab_size}")
    if "reward_model" in rl.rewards and index.reward_model is None:
        problems.append("the reward_model reward needs a reward model in the prompt folder")
    if "safety" in rl.rewards and index.refusal_classifier is None:
        problems.append("the safety reward needs the refusal classifier in the prompt folder")
    if (cfg.micro_batch_size * cfg.grad_accum_steps) % rl.group_size:
        problems.append(
            f"micro_batch_size x grad_accum_steps = "
            f"{cfg.micro_batch_size * cfg.grad_accum_steps} completions per rank and "
            f"step are not whole groups of {rl.group_size}"
        )
    if cfg.max_steps % rl.iterations or cfg.checkpoint_every % rl.iterations:
        problems.append(
            f"max_steps and checkpoint_every must be multiples of iterations "
            f"({rl.iterations}): a checkpoint falls between rollouts"
        )
    train_rows = sum(s.rows for s in index.split_shards("train"))
    per_step = cfg.micro_batch_size * cfg.grad_accum_steps * world_size // rl.group_size
    if train_rows < per_step:
        problems.append(f"{train_rows} training prompts cannot fill one step of {per_step}")
    if problems:
        raise TrainingInputError(f"{data_dir}: " + "; ".join(problems))
    return index, initial


def build_rewards(
    rl: GRPOConfig, data_dir: Path, index: RLPromptIndex, device: torch.device, autocast: Autocast
) -> tuple[list[Reward], RefusalClassifier | None]:
    """The configured rewards, and the refusal classifier when the folder has one (the
    evaluation's safety rates use it whatever the rewards are)."""
    classifier = None
    if index.refusal_classifier is not None:
        classifier = RefusalClassifier.from_bytes(
            (data_dir / index.refusal_classifier).read_bytes()
        )
    rewards: list[Reward] = []
    for name in rl.rewards:
        if name == "gsm8k":
            rewards.append(AnswerMatch())
        elif name == "format":
            rewards.append(FinalAnswerFormat())
        elif name == "safety":
            rewards.append(SafetyReward(classifier))  # type: ignore[arg-type]
        else:
            model = load_model(data_dir / index.reward_model, RewardModel).to(device)  # type: ignore[operator]
            rewards.append(
                RewardModelScore(model, index.pad_id, rl.generation_batch_size, autocast)
            )
    return rewards, classifier


def heldout_metrics(
    sampler: Sampler,
    rewards: list[Reward],
    weights: dict[str, float],
    prompts: list[RLPrompt],
    prompt_ids: list[list[int]],
    classifier: RefusalClassifier | None,
) -> dict[str, float]:
    """Greedy answers to held-out prompts: their rewards and the task metrics."""
    if not prompts:
        return {}
    completions = sampler.complete(prompts, prompt_ids, None)
    total, scores, _ = score_all(rewards, weights, completions)
    out = {"val/reward": float(total.mean())}
    for name, values in scores.items():
        applies = values[~np.isnan(values)]
        if len(applies):
            out[f"val/reward_{name}"] = float(applies.mean())
    math = [i for i, p in enumerate(prompts) if p.answer]
    if math:
        out["val/gsm8k_accuracy"] = float(AnswerMatch().score(completions)[math].mean())
    if classifier is not None:
        for kind, key in (("harmful", "val/refusal_rate"), ("safe", "val/over_refusal_rate")):
            texts = [t for p, t in zip(prompts, completions.texts, strict=True) if p.kind == kind]
            if texts:
                out[key] = float(classifier.predict(texts).mean())
    return out


def interleaved(
    prompts: list[RLPrompt], prompt_ids: list[list[int]], count: int
) -> tuple[list[RLPrompt], list[list[int]]]:
    """The first ``count`` held-out prompts taking each source in turn, so that a small
    evaluation still covers math, harmful and safe prompts."""
    by_source: dict[str, list[int]] = {}
    for i, prompt in enumerate(prompts):
        by_source.setdefault(prompt.source, []).append(i)
    turns = itertools.zip_longest(*by_source.values())
    rows = [i for turn in turns for i in turn if i is not None][:count]
    return [prompts[i] for i in rows], [prompt_ids[i] for i in rows]


def rewarded(
    cfg: TrainConfig, prompts: list[RLPrompt], prompt_ids: list[list[int]]
) -> tuple[list[RLPrompt], list[list[int]]]:
    """The training prompts some weighted reward applies to (a prompt no reward scores would
    only cost samples): with GSM8K rewards alone, the math prompts."""
    names = [name for name, weight in cfg.rl.rewards.items() if weight]
    keep = [i for i, p in enumerate(prompts) if any(reward_applies(n, p) for n in names)]
    per_step = cfg.micro_batch_size * cfg.grad_accum_steps // cfg.rl.group_size
    if len(keep) < per_step:
        raise TrainingInputError(
            f"{len(keep)} training prompts have a reward among {names}: fewer than one step's"
        )
    return [prompts[i] for i in keep], [prompt_ids[i] for i in keep]


def grpo_task(cfg: TrainConfig, env: DistEnv) -> TrainingTask:
    data_dir = Path(cfg.data_dir)
    index, model_cfg = grpo_inputs(cfg, env.world_size)
    prompts, prompt_ids = rewarded(cfg, *read_rl_prompts(data_dir, index, "train"))
    val_prompts, val_ids = interleaved(
        *read_rl_prompts(data_dir, index, "val"), cfg.rl.eval_prompts
    )
    tokenizer_file = data_dir / index.tokenizer_file
    tokenizer = load_tokenizer(tokenizer_file)
    rollouts = Rollouts(
        prompts,
        prompt_ids,
        cfg.rl,
        index.pad_id,
        cfg.micro_batch_size,
        cfg.grad_accum_steps,
        cfg.seed,
        env.rank,
        env.world_size,
    )
    classifier: list[RefusalClassifier | None] = [None]

    def attach(model: nn.Module, device: torch.device, autocast: Autocast) -> None:
        """Bind the engine's model: sampling, rewards (a reward model on the device) and the
        frozen reference when a KL penalty is on."""
        rollouts.rewards, classifier[0] = build_rewards(cfg.rl, data_dir, index, device, autocast)
        reference = load_model(Path(cfg.init.path)).to(device) if cfg.rl.beta > 0 else None  # type: ignore[union-attr]
        rollouts.sampler = Sampler(model, tokenizer, index.end_turn_id, cfg.rl, autocast, reference)

    def evaluate(model: nn.Module, device: torch.device, autocast: Autocast) -> dict[str, float]:
        assert rollouts.sampler is not None
        return heldout_metrics(
            rollouts.sampler,
            list(rollouts.rewards),
            cfg.rl.rewards,
            val_prompts,
            val_ids,
            classifier[0],
        )

    task = chat_model_task(
        cfg,
        GroupRelative(cfg.rl),
        rollouts,
        model_cfg,
        evaluate,
        tokenizer_file,
        [list(p.turns) for p in val_prompts[:SAMPLE_PROMPTS]],
        {"tokenizer_hash": index.tokenizer_hash, "data_version": index.data_version},
    )
    task.attach = attach
    return task
