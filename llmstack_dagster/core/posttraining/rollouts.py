"""Rollouts: the online-RL data source of the engine, sampled from the policy being trained.

Each rollout takes the next prompts of a seeded per-epoch permutation of the training prompts
(``prompts_per_step`` of them across all ranks; each rank samples its own share), samples a
group of completions per prompt with the batched KV-cache generation, rewards them, computes
the group advantages and, once per rollout batch, the old policy's log-probabilities (when
the batch is reused for μ > 1 steps) and the reference's (when a KL penalty is on). The batch
is then split into the step's micro-batches and trained on for ``iterations`` steps.

Every completion is sampled with its own seed, a function of the run's seed, the epoch and the
prompt's position in the stream, so the sampler needs no saved state: the position alone
(:class:`LoaderPosition`, checkpointed by the engine at rollout boundaries) makes a resumed
run sample exactly what the uninterrupted run did.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import xxhash
from tokenizers import Tokenizer
from torch import nn

from llmstack_dagster.core.models.generation import Autocast, generate_batch, unwrap
from llmstack_dagster.core.models.loss import IGNORE_INDEX
from llmstack_dagster.core.posttraining.grpo_config import GRPOConfig
from llmstack_dagster.core.posttraining.grpo_loss import group_advantages
from llmstack_dagster.core.posttraining.logprobs import pair_rows
from llmstack_dagster.core.posttraining.rewards import Completions, Reward, RLPrompt, score_all
from llmstack_dagster.core.training.data_loader import Batch, EpochOrder, LoaderPosition

STAT_PREFIX = "stat_"  # batch entries the objective reports as metrics as they are


def sample_seed(seed: int, epoch: int, prompt_position: int, member: int) -> int:
    """The sampling seed of one completion: its run, epoch, prompt position and group member."""
    return xxhash.xxh64_intdigest(f"{seed}:{epoch}:{prompt_position}:{member}".encode()) >> 1


@torch.no_grad()
def token_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    targets: torch.Tensor,
    autocast: Autocast,
    batch_size: int,
) -> torch.Tensor:
    """Per-token log-probabilities of the targets (0 where ignored), in chunks of rows."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(input_ids), batch_size):
        with autocast():
            nll = model(
                input_ids[start : start + batch_size].to(device),
                targets[start : start + batch_size].to(device),
                reduction="none",
            )
        out.append(-nll.float().cpu())
    model.train(was_training)
    return torch.cat(out)


@dataclass
class Sampler:
    """Samples completions from the policy; set by the task once the engine built it."""

    policy: nn.Module
    tokenizer: Tokenizer
    end_turn_id: int
    rl: GRPOConfig
    autocast: Autocast = nullcontext
    reference: nn.Module | None = None  # the initial weights, for the KL penalty

    def complete(
        self, prompts: list[RLPrompt], prompt_ids: list[list[int]], seeds: list[int] | None
    ) -> Completions:
        """One completion per prompt, sampled with its seed (``seeds`` None: greedy). A
        completion that ended its turn keeps the end-of-turn id (the policy learns to stop)."""
        window = unwrap(self.policy).cfg.max_seq_len
        max_new = min(self.rl.max_new_tokens, window - 1)
        new = generate_batch(
            self.policy,
            prompt_ids,
            max_new,
            temperature=self.rl.temperature if seeds is not None else 0.0,
            top_p=self.rl.top_p,
            stop_ids={self.end_turn_id},
            seeds=seeds,
            batch_size=self.rl.generation_batch_size,
            autocast=self.autocast,
        )
        truncated = [len(ids) >= max_new for ids in new]
        return Completions(
            prompts=list(prompts),
            prompt_ids=list(prompt_ids),
            completion_ids=[
                ids if cut else [*ids, self.end_turn_id]
                for ids, cut in zip(new, truncated, strict=True)
            ],
            texts=[self.tokenizer.decode(ids) for ids in new],
            truncated=truncated,
        )


class Rollouts:
    """This rank's micro-batches of sampled, rewarded completions, one optimizer step at a
    time (the engine's :class:`DataSource`)."""

    def __init__(
        self,
        prompts: list[RLPrompt],
        prompt_ids: list[list[int]],
        rl: GRPOConfig,
        pad_id: int,
        micro_batch: int,
        accum_steps: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.prompts, self.prompt_ids, self.rl, self.pad_id = prompts, prompt_ids, rl, pad_id
        self.micro_batch, self.accum_steps, self.seed = micro_batch, accum_steps, seed
        self.rank, self.world = rank, world
        self.global_batch = micro_batch * accum_steps * world  # completions per step
        if (micro_batch * accum_steps) % rl.group_size:
            raise ValueError(
                f"a rank's {micro_batch * accum_steps} completions per step are not "
                f"whole groups of {rl.group_size}"
            )
        self.prompts_per_step = self.global_batch // rl.group_size
        if self.prompts_per_step > len(prompts):
            raise ValueError(f"{self.prompts_per_step} prompts per step > {len(prompts)} prompts")
        mean_prompt = float(np.mean([len(ids) for ids in prompt_ids]))  # until the first rollout
        self.tokens_per_step = int(self.global_batch * (mean_prompt + rl.max_new_tokens))
        self.position = LoaderPosition()
        self.sampler: Sampler | None = None
        self.rewards: Sequence[Reward] = ()
        self._buffer: list[Batch] = []
        self._uses_left = 0
        self._epoch_order = EpochOrder(len(prompts), seed)

    def next_step(self) -> list[Batch]:
        """The micro-batches of the current rollout batch; a new rollout every μ steps."""
        if self._uses_left == 0:
            self._buffer = self._rollout()
            self._uses_left = self.rl.iterations
        self._uses_left -= 1
        return self._buffer

    def _rollout(self) -> list[Batch]:
        if self.sampler is None:
            raise RuntimeError("rollouts need the policy: the task binds it to the engine's model")
        pos = self.position
        if pos.cursor + self.prompts_per_step > len(self.prompts):
            pos = LoaderPosition(epoch=pos.epoch + 1, cursor=0)
        order = self._epoch_order(pos.epoch)
        share = self.prompts_per_step // self.world
        first = pos.cursor + self.rank * share
        mine = [int(i) for i in order[first : first + share]]
        group = self.rl.group_size
        seeds = [
            sample_seed(self.seed, pos.epoch, first + j, g)
            for j in range(len(mine))
            for g in range(group)
        ]
        rows = [i for i in mine for _ in range(group)]
        completions = self.sampler.complete(
            [self.prompts[i] for i in rows], [self.prompt_ids[i] for i in rows], seeds
        )
        self.position = LoaderPosition(epoch=pos.epoch, cursor=pos.cursor + self.prompts_per_step)
        return self._batches(completions)

    def _batches(self, completions: Completions) -> list[Batch]:
        """Rewards, advantages and log-probabilities of a rollout, cut into micro-batches."""
        sampler = self.sampler
        assert sampler is not None
        total, scores, unrewarded = score_all(self.rewards, self.rl.rewards, completions)
        rewards = torch.tensor(total, dtype=torch.float32)
        advantages = group_advantages(rewards, self.rl.group_size, self.rl.scale_rewards)
        input_ids, targets = pair_rows(
            completions.prompt_ids, completions.completion_ids, self.pad_id
        )
        truncated = torch.tensor(completions.truncated)
        if self.rl.mask_truncated:
            targets[truncated] = IGNORE_INDEX
        rows = {"input_ids": input_ids, "targets": targets, "advantages": advantages}
        if self.rl.iterations > 1:
            rows["old_logp"] = token_logprobs(
                sampler.policy, input_ids, targets, sampler.autocast, self.micro_batch
            )
        if sampler.reference is not None:
            rows["ref_logp"] = token_logprobs(
                sampler.reference, input_ids, targets, sampler.autocast, self.micro_batch
            )
        tokens = sum(
            len(p) + len(c)
            for p, c in zip(completions.prompt_ids, completions.completion_ids, strict=True)
        )
        self.tokens_per_step = tokens * self.world  # this rollout's, for tokens/s and MFU
        stats = self._stats(rewards, scores, unrewarded, completions, truncated)
        stat_rows = {f"{STAT_PREFIX}{k}": v for k, v in stats.items()}
        return [
            _trimmed({k: v[start : start + self.micro_batch] for k, v in rows.items()}) | stat_rows
            for start in range(0, len(completions), self.micro_batch)
        ]

    def _stats(
        self,
        rewards: torch.Tensor,
        scores: dict[str, np.ndarray],
        unrewarded: int,
        completions: Completions,
        truncated: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """This rank's rollout statistics, each divided by the micro-batch count so that the
        engine's sum over the step's micro-batches gives the rollout's value."""
        groups = rewards.view(-1, self.rl.group_size)
        lengths = torch.tensor(
            [len(ids) for ids in completions.completion_ids], dtype=torch.float32
        )
        values = {
            "reward": rewards.mean(),
            "reward_std": groups.std(dim=1).mean(),
            "zero_std_groups": (groups.std(dim=1) == 0).float().mean(),
            "completion_tokens": lengths.mean(),
            "truncated": truncated.float().mean(),
            "unrewarded": torch.tensor(unrewarded / len(completions)),
        }
        for name, values_of in scores.items():  # every rank reports the same names
            applies = values_of[~np.isnan(values_of)]
            values[f"reward_{name}"] = torch.tensor(float(applies.mean()) if len(applies) else 0.0)
        parts = self.accum_steps
        return {k: (v / parts).float() for k, v in values.items()}


def _trimmed(part: Batch) -> Batch:
    """A micro-batch cut after its last target column (rows were padded to the rollout's
    longest sequence)."""
    active = (part["targets"] != IGNORE_INDEX).any(dim=0).nonzero()
    width = int(active.max()) + 1 if len(active) else 1
    return {k: v[:, :width] if v.ndim == 2 else v for k, v in part.items()}
