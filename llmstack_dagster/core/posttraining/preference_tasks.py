"""The reward-model and DPO tasks on the engine: preference pairs in, one loop for both.

- ``reward``: a scalar head on the final token of ``prompt + reply`` (``models/reward.py``),
  initialized from the SFT checkpoint, trained with the Bradley–Terry loss; evaluation:
  held-out accuracy (r_chosen > r_rejected), margin and loss; export: an HF
  sequence-classification folder.
- ``dpo``: the policy, initialized from the SFT checkpoint, trained with a DPO-family loss
  (``preference_losses.py``) against the reference log-probabilities cached by
  ``reference_logprobs`` (``reference.py``), checked against the reference's digest; evaluation:
  the same rewards, accuracy and margins on held-out pairs; samples: answers to held-out
  prompts; export: the causal HF folder with the chat template.

Both normalize each step's loss over the step's pairs on every rank, so the split into
micro-batches and ranks does not change the gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import torch
import torch.distributed as dist
from torch import nn

from llmstack_dagster.core.chat.conversation import Turn
from llmstack_dagster.core.models.config import ModelConfig
from llmstack_dagster.core.models.generation import Autocast
from llmstack_dagster.core.models.reward import NEW_PARAMETERS, RewardModel
from llmstack_dagster.core.posttraining.logprobs import sequence_logprobs
from llmstack_dagster.core.posttraining.pair_data import PairBatches, PreferencePairs
from llmstack_dagster.core.posttraining.preference_index import (
    PREFERENCE_INDEX_FILE,
    PreferenceIndex,
    load_preference_index,
)
from llmstack_dagster.core.posttraining.preference_losses import preference_loss, reward_loss
from llmstack_dagster.core.posttraining.reference import (
    ReferenceValues,
    load_reference,
    reference_key,
)
from llmstack_dagster.core.posttraining.reward_export import export_reward_model
from llmstack_dagster.core.training.config import TrainConfig
from llmstack_dagster.core.training.data_loader import Batch, LoaderPosition
from llmstack_dagster.core.training.distributed import DistEnv
from llmstack_dagster.core.training.init_weights import initial_model_config, weights_digest
from llmstack_dagster.core.training.objectives import Forward, Objective
from llmstack_dagster.core.training.preflight import TrainingInputError
from llmstack_dagster.core.training.sft_task import chat_model_task
from llmstack_dagster.core.training.training_task import TrainingTask

PAIRS_TEXT_DIR = "pairs"  # the pairs as text (preference_index.py)
SAMPLE_PROMPTS = 4


def preference_inputs(cfg: TrainConfig, world_size: int) -> tuple[PreferenceIndex, ModelConfig]:
    """The checked preference index and the shape of the initial weights: an SFT model (or
    any checkpoint or import) is required; pad is not eos; every pair fits the model's
    window; the shard files exist; the training split fills one optimizer step."""
    initial = initial_model_config(cfg)
    if initial is None:
        raise TrainingInputError(f"{cfg.objective} starts from a model: set init")
    data_dir = Path(cfg.data_dir)
    if not (data_dir / PREFERENCE_INDEX_FILE).is_file():
        raise TrainingInputError(f"preference dataset index {data_dir / 'index.json'} missing")
    index = load_preference_index(data_dir)
    problems = []
    if not (data_dir / index.tokenizer_file).is_file():
        problems.append(f"tokenizer {data_dir / index.tokenizer_file} is missing")
    if index.pad_id == index.eos_id:
        problems.append(f"pad id {index.pad_id} equals eos")
    if initial.vocab_size < index.vocab_size:
        problems.append(f"model vocab {initial.vocab_size} < tokenizer's {index.vocab_size}")
    if index.max_len > initial.max_seq_len:
        problems.append(f"pairs of {index.max_len} tokens exceed max_seq_len {initial.max_seq_len}")
    problems += [
        f"shard {s.path} missing" for s in index.shards if not (data_dir / s.path).is_file()
    ]
    pairs = sum(s.rows for s in index.split_shards("train"))
    step = cfg.micro_batch_size * cfg.grad_accum_steps * world_size
    if pairs < step:
        problems.append(f"{pairs} training pairs cannot fill one step of {step} pairs")
    if problems:
        raise TrainingInputError(f"{data_dir}: " + "; ".join(problems))
    return index, initial


def _step_pairs(micro_batches: list[Batch]) -> torch.Tensor:
    """The step's pairs over all micro-batches and ranks."""
    count = torch.tensor(float(sum(len(b["pair_index"]) for b in micro_batches)))
    if dist.is_initialized():
        count = count.to("cuda" if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(count)
    return count


class PairObjective(Objective):
    """Per-pair losses averaged over the step's pairs on every rank (the ranks' gradients are
    averaged by DDP/FSDP, so each rank's share is scaled by the world size)."""

    def step_denominator(self, micro_batches: list[Batch]) -> torch.Tensor:
        return _step_pairs(micro_batches)

    def shares(
        self, losses: torch.Tensor, metrics: dict[str, torch.Tensor], denominator: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        world = dist.get_world_size() if dist.is_initialized() else 1
        scale = world / torch.as_tensor(denominator, device=losses.device).clamp_min(1.0)
        loss = losses.sum() * scale
        out = {"loss": loss.detach()}
        out |= {name: value.detach().float().sum() * scale for name, value in metrics.items()}
        return loss, out


class BradleyTerry(PairObjective):
    name = "reward"

    def __init__(self, margin: float, center: float) -> None:
        self.margin, self.center = margin, center

    def rewards(self, forward: Forward, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        rewards = forward(batch["input_ids"], batch["last_index"])
        half = len(rewards) // 2
        return rewards[:half], rewards[half:]

    def loss(
        self, forward: Forward, batch: Batch, denominator: float | torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        chosen, rejected = self.rewards(forward, batch)
        margin = torch.full_like(chosen, self.margin) if self.margin else None
        losses, metrics = reward_loss(chosen, rejected, margin, self.center, batch.get("label"))
        return self.shares(losses, metrics, torch.as_tensor(denominator))


class DirectPreference(PairObjective):
    name = "dpo"

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg.preference.dpo

    def terms(self, forward: Forward, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logp, tokens = sequence_logprobs(forward, batch["input_ids"], batch["targets"])
        half = len(logp) // 2
        return preference_loss(
            self.cfg, logp[:half], logp[half:], batch["ref_chosen"], batch["ref_rejected"],
            tokens[:half], tokens[half:], batch.get("label"),
        )  # fmt: skip

    def loss(
        self, forward: Forward, batch: Batch, denominator: float | torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        losses, metrics = self.terms(forward, batch)
        return self.shares(losses, metrics, torch.as_tensor(denominator))


class ReferencedBatches:
    """Pair batches with the cached reference log-probabilities of their pairs attached."""

    def __init__(self, batches: PairBatches, reference: ReferenceValues) -> None:
        self.batches, self.reference = batches, reference
        self.global_batch, self.tokens_per_step = batches.global_batch, batches.tokens_per_step

    @property
    def position(self) -> LoaderPosition:
        return self.batches.position

    @position.setter
    def position(self, value: LoaderPosition) -> None:
        self.batches.position = value

    def next_step(self) -> list[Batch]:
        return [attach_reference(b, self.reference) for b in self.batches.next_step()]


def attach_reference(batch: Batch, reference: ReferenceValues) -> Batch:
    rows = batch["pair_index"]
    return {**batch, "ref_chosen": reference.chosen[rows], "ref_rejected": reference.rejected[rows]}


@torch.no_grad()
def heldout_pair_metrics(
    objective: BradleyTerry | DirectPreference,
    model: nn.Module,
    batches: list[Batch],
    device: torch.device,
    autocast: Autocast,
) -> dict[str, float]:
    """The objective's loss and metrics averaged over held-out pairs, as ``val/...``."""
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    pairs = 0
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast():
            if isinstance(objective, BradleyTerry):
                chosen, rejected = objective.rewards(model, batch)
                losses, metrics = reward_loss(chosen, rejected, None, 0.0, batch.get("label"))
            else:
                losses, metrics = objective.terms(model, batch)
        for name, value in {"loss": losses, **metrics}.items():
            sums[name] = sums.get(name, 0.0) + float(value.float().sum())
        pairs += len(batch["pair_index"])
    model.train(was_training)
    return {f"val/{name}": total / pairs for name, total in sums.items()} if pairs else {}


def _heldout_batches(
    data_dir: Path,
    index: PreferenceIndex,
    cfg: TrainConfig,
    reference_of: Callable[[PreferencePairs, str], ReferenceValues] | None = None,
) -> list[Batch]:
    """The first ``eval.batches`` micro-batches of held-out pairs (with their cached
    reference values when ``reference_of`` reads them)."""
    if not index.split_shards("val"):
        return []
    val = PreferencePairs(data_dir, index, "val")
    count = min(len(val), cfg.eval.batches * cfg.micro_batch_size)
    batches = [val.batch(list(range(s, min(s + cfg.micro_batch_size, count))))
               for s in range(0, count, cfg.micro_batch_size)]  # fmt: skip
    if reference_of is not None:
        reference = reference_of(val, "val")
        batches = [attach_reference(b, reference) for b in batches]
    return batches


def reward_task(cfg: TrainConfig, env: DistEnv) -> TrainingTask:
    data_dir = Path(cfg.data_dir)
    index, model_cfg = preference_inputs(cfg, env.world_size)
    train = PreferencePairs(data_dir, index, "train")
    batches = PairBatches(train, cfg.micro_batch_size, cfg.grad_accum_steps, cfg.seed,
                          env.rank, env.world_size)  # fmt: skip
    objective = BradleyTerry(cfg.preference.reward_margin, cfg.preference.center_rewards)
    heldout = _heldout_batches(data_dir, index, cfg)

    def evaluate(model: nn.Module, device: torch.device, autocast: Autocast) -> dict[str, float]:
        return heldout_pair_metrics(objective, model, heldout, device, autocast)

    def export(checkpoint: Path, dest: Path) -> Path:
        return export_reward_model(checkpoint, dest, data_dir / index.tokenizer_file, index.pad_id)

    return TrainingTask(
        objective=objective,
        data=batches,
        model_config=model_cfg,
        evaluate=evaluate,
        sample=lambda model, device: [],
        export=export,
        provenance={"tokenizer_hash": index.tokenizer_hash, "data_version": index.data_version},
        build_model=RewardModel,
        fresh_parameters=NEW_PARAMETERS,
    )


def heldout_prompts(data_dir: Path, count: int | None = None) -> list[tuple[str, list[Turn]]]:
    """(pair id, the shared prompt's turns) of the first ``count`` held-out pairs (all when
    None), from the pairs' text."""
    prompts: list[tuple[str, list[Turn]]] = []
    for path in sorted((Path(data_dir) / PAIRS_TEXT_DIR).glob("*.parquet")):
        for row in pq.read_table(path).to_pylist():
            if row["split"] == "val" and (count is None or len(prompts) < count):
                prompts.append((row["id"], [Turn(**turn) for turn in row["prompt"]]))
    return prompts


def dpo_task(cfg: TrainConfig, env: DistEnv) -> TrainingTask:
    data_dir = Path(cfg.data_dir)
    index, model_cfg = preference_inputs(cfg, env.world_size)
    if cfg.reference_logprobs is None:
        raise TrainingInputError("DPO needs reference_logprobs: the cached reference folder")
    expected = reference_key(
        cfg.preference.reference_sha256 or weights_digest(Path(cfg.init.path)),
        index,  # type: ignore[union-attr]
    )

    def reference_of(pairs: PreferencePairs, split: str) -> ReferenceValues:
        return load_reference(Path(cfg.reference_logprobs), expected, pairs, split)  # type: ignore[arg-type]

    train = PreferencePairs(data_dir, index, "train")
    batches = PairBatches(train, cfg.micro_batch_size, cfg.grad_accum_steps, cfg.seed,
                          env.rank, env.world_size)  # fmt: skip
    data = ReferencedBatches(batches, reference_of(train, "train"))
    objective = DirectPreference(cfg)
    heldout = _heldout_batches(data_dir, index, cfg, reference_of)

    def evaluate(model: nn.Module, device: torch.device, autocast: Autocast) -> dict[str, float]:
        return heldout_pair_metrics(objective, model, heldout, device, autocast)

    return chat_model_task(
        cfg, objective, data, model_cfg, evaluate, data_dir / index.tokenizer_file,
        [turns for _, turns in heldout_prompts(data_dir, SAMPLE_PROMPTS)],
        {"tokenizer_hash": index.tokenizer_hash, "data_version": index.data_version},
    )  # fmt: skip
