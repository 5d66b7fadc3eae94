"""Posttraining, part 1: learning from human preferences.

``preference_dataset`` reads preference pairs (HH-RLHF dialogues, Hugging Face presets),
quarantines what does not parse, drops duplicates and pairs contaminated by an evaluation set,
splits off held-out pairs and renders them in the one chat format with the SFT model's
tokenizer. ``reward_model`` trains a scalar head on the SFT model with the Bradley–Terry loss.
``reference_logprobs`` scores every pair once with the frozen SFT model, and
``dpo_checkpoint`` trains the SFT model with a DPO-family loss against that cache.
"""

import posixpath
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from llmstack_dagster.assets.common import (
    GLOBAL_ASSETS_POOL,
    chart_metadata,
    markdown_table,
    shared_data_dir,
    version_metadata,
)
from llmstack_dagster.assets.training_runs import (
    TOXICITY_TRACKING_PROMPTS,
    asset_train_config,
    local_run_files,
    read_current_run,
    run_training_asset,
    training_metadata,
)
from llmstack_dagster.core.charts import figure, png_bytes
from llmstack_dagster.core.chat.decontamination import build_index
from llmstack_dagster.core.models.reward import RewardModel
from llmstack_dagster.core.posttraining.pair_data import PreferencePairs
from llmstack_dagster.core.posttraining.preference_build import (
    PreferenceBuildConfig,
    build_preference_dataset,
)
from llmstack_dagster.core.posttraining.preference_index import load_preference_index
from llmstack_dagster.core.posttraining.preference_losses import (
    PreferenceLoss,
    PreferenceLossConfig,
)
from llmstack_dagster.core.posttraining.preference_sources import (
    demo_preference_sources,
    shared_preference_sources,
)
from llmstack_dagster.core.posttraining.reference import (
    reference_key,
    write_reference_cache,
)
from llmstack_dagster.core.storage import (
    ShardManifest,
    Storage,
    build_version,
    content_version,
    read_manifest,
)
from llmstack_dagster.core.training.config import (
    EvalConfig,
    InitConfig,
    OptimConfig,
    PreferenceConfig,
    TrainConfig,
)
from llmstack_dagster.core.training.distributed import pick_device
from llmstack_dagster.core.training.init_weights import (
    load_model,
    weights_digest,
)
from llmstack_dagster.core.training.tokenizer import TOKENIZER_FILE, tokenizer_hash
from llmstack_dagster.profiles import profiled
from llmstack_dagster.resources.storage import StorageResource
from llmstack_dagster.resources.training import TrainingResource

POSTTRAINING_GROUP = "posttraining"
PREFERENCE_CODE_VERSION = "1"
REFERENCE_CODE_VERSION = "1"


def sft_model(store: Storage, tmp: str) -> tuple[Path, Path, str]:
    """The SFT checkpoint, the tokenizer it was rendered with, and a description."""
    current = read_current_run(store, "sft_checkpoint")
    checkpoint, _ = local_run_files(store, current, tmp)
    dataset = read_manifest(store, "sft_dataset", None)
    data_dir = store.local_path(dataset.folder) or store.download_dir(
        dataset.folder, str(Path(tmp) / "sft_data")
    )
    described = f"sft_checkpoint run {current['run_id']} step {current['step']}"
    return checkpoint, Path(data_dir) / TOKENIZER_FILE, described


def local_folder(store: Storage, manifest: ShardManifest, tmp: str, name: str) -> Path:
    return Path(store.local_path(manifest.folder) or store.download_dir(
        manifest.folder, str(Path(tmp) / name)))  # fmt: skip


@profiled("preference_dataset")
class PreferenceDatasetConfig(Config):
    """``sources``: ``shared`` (the 1,500 HH-RLHF harmless pairs of ``../shared/data``) or
    ``demo`` (the same file, capped). Lengths: TRL's DPO defaults (1,024 tokens, prompts
    keep their last 512); 5% held out."""

    sources: Literal["shared", "demo"] = "shared"
    max_len: int = 1024
    max_prompt_len: int = 512
    val_fraction: float = 0.05
    seed: int = 0


@asset(
    group_name=POSTTRAINING_GROUP,
    pool=GLOBAL_ASSETS_POOL,
    code_version=PREFERENCE_CODE_VERSION,
    deps=["sft_checkpoint"],
    description="Preference pairs (a shared prompt, a chosen and a rejected final reply) in "
    "the one conversation format: parse errors, identical replies and truncated replies "
    "quarantined, exact duplicates and pairs contaminated by an evaluation set dropped, a "
    "held-out split, rendered with the SFT model's tokenizer and chat template.",
)
def preference_dataset(
    context: AssetExecutionContext, config: PreferenceDatasetConfig, storage: StorageResource
) -> MaterializeResult:
    store = storage.get()
    data_dir = shared_data_dir()
    sources = (demo_preference_sources(data_dir) if config.sources == "demo"
               else shared_preference_sources(data_dir))  # fmt: skip
    build = PreferenceBuildConfig(max_len=config.max_len, max_prompt_len=config.max_prompt_len,
                                  val_fraction=config.val_fraction, seed=config.seed)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        _, tokenizer, start = sft_model(store, tmp)
        version_id = content_version(
            "preference_dataset", PREFERENCE_CODE_VERSION, config.model_dump(),
            [tokenizer_hash(tokenizer), *(s.model_dump_json() for s in sources)],
        )  # fmt: skip

        def write(version) -> ShardManifest:  # noqa: ANN001
            decontamination = build_index(data_dir)
            index, drops, stats = build_preference_dataset(
                store, version, sources, tokenizer, build, decontamination
            )
            counts = {name: dict(c) for name, c in stats.counts.items()}
            return ShardManifest(
                asset="preference_dataset",
                shards=stats.shards,
                drops=drops,
                counts={
                    k: sum(c.get(k, 0) for c in counts.values())
                    for k in (
                        "read",
                        "quarantined",
                        "duplicate",
                        "contaminated",
                        "dropped",
                        "train",
                        "val",
                    )
                },  # fmt: skip
                extra={
                    "start_model": start,
                    "sources": counts,
                    "tokens": dict(stats.tokens),
                    "truncated_prompts": stats.truncated_prompts,
                    "decontamination": stats.decontamination,
                    "samples": stats.samples,
                    "template": index.template,
                },
            )

        manifest = build_version(store, "preference_dataset", None, version_id, write)
    extra = manifest.extra
    per_source = [{"source": name, **c} for name, c in extra["sources"].items()]
    return MaterializeResult(
        metadata={
            "start_model": MetadataValue.text(extra["start_model"]),
            "counts": MetadataValue.json(manifest.counts),
            "per_source": MetadataValue.md(markdown_table(per_source)),
            "tokens": MetadataValue.json(extra["tokens"]),
            "truncated_prompts": MetadataValue.int(extra["truncated_prompts"]),
            "decontamination": MetadataValue.json(extra["decontamination"]),
            "samples": MetadataValue.md(markdown_table(extra["samples"])),
            **version_metadata(manifest),
        }
    )


def pair_fields(config: Any, objective: str, lr: float, init_path: str) -> dict[str, Any]:
    """The engine settings the reward-model and DPO configs share (each asset declares its
    own config class: profiles set defaults per class)."""
    return {
        "objective": objective,
        "micro_batch_size": config.micro_batch_size,
        "grad_accum_steps": config.grad_accum_steps,
        "max_steps": config.max_steps,
        "checkpoint_every": config.checkpoint_every,
        "log_every": config.log_every,
        "cpu_threads": config.cpu_threads,
        "seed": config.seed,
        "optim": OptimConfig(
            lr=lr,
            warmup_steps=config.warmup_steps,
            min_lr_ratio=0.0,
            schedule="linear",
            weight_decay=0.0,
        ),  # fmt: skip
        "eval": EvalConfig(
            every=config.eval_every, batches=config.eval_batches, max_new_tokens=48
        ),  # fmt: skip
        "init": InitConfig(path=init_path),
    }


@profiled("reward_model")
class RewardModelAssetConfig(Config):
    """Bradley–Terry on the SFT model with a scalar head. Learning rate 1e-5 with a linear
    decay (TRL's RewardConfig; InstructGPT trained its reward model for one epoch at 9e-6);
    ``center_rewards`` is TRL's ``center_rewards_coefficient`` (0: off)."""

    micro_batch_size: int = 4
    grad_accum_steps: int = 8
    max_steps: int = 500
    lr: float = 1e-5
    warmup_steps: int = 10
    reward_margin: float = 0.0
    center_rewards: float = 0.0
    eval_every: int = 100
    eval_batches: int = 8
    checkpoint_every: int = 100
    log_every: int = 10
    cpu_threads: int | None = None
    seed: int = 1337
    fresh: bool = False
    config_path: str = ""
    work_dir: str = ""

    def train_config(self, data_dir: str, init_path: str) -> TrainConfig:
        fields = pair_fields(self, "reward", self.lr, init_path)
        fields["preference"] = PreferenceConfig(reward_margin=self.reward_margin,
                                                center_rewards=self.center_rewards)  # fmt: skip
        return asset_train_config(fields, self.config_path, data_dir)


def pair_data_dir(store: Storage, tmp: str) -> tuple[ShardManifest, Path]:
    dataset = read_manifest(store, "preference_dataset", None)
    return dataset, local_folder(store, dataset, tmp, "pairs")


@asset(
    group_name=POSTTRAINING_GROUP,
    pool=GLOBAL_ASSETS_POOL,
    deps=["preference_dataset"],
    op_tags={"llmstack/gpu": "true"},
    description="The SFT model with a scalar head on the final token, trained on the "
    "preference pairs with the Bradley–Terry loss: held-out accuracy, margin, reward "
    "distributions; exported as a Hugging Face sequence-classification folder.",
)
def reward_model(
    context: AssetExecutionContext,
    config: RewardModelAssetConfig,
    storage: StorageResource,
    training: TrainingResource,
) -> MaterializeResult:
    store = storage.get()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, _, start = sft_model(store, tmp)
        dataset, data_dir = pair_data_dir(store, tmp)
        run = run_training_asset(
            context, store, training, "reward_model",
            config.train_config(str(data_dir), str(checkpoint)),
            fresh=config.fresh, work_dir=config.work_dir,
        )  # fmt: skip
        final, _ = local_run_files(store, run.current, tmp)
        chosen, rejected = heldout_rewards(final, data_dir)
    chart_rel = posixpath.join("reward_model", "rewards.png")
    store.write_bytes(chart_rel, reward_histogram_png(chosen, rejected))
    return MaterializeResult(
        metadata={
            **training_metadata(context, store, "reward_model", run),
            "start_model": MetadataValue.text(start),
            "heldout_accuracy": MetadataValue.float(float((chosen > rejected).mean())),
            "heldout_mean_margin": MetadataValue.float(float((chosen - rejected).mean())),
            "reward_distributions": chart_metadata(
                context.instance, store, chart_rel, "held-out rewards"
            ),  # fmt: skip
            "data_version": MetadataValue.text(str(dataset.content_version)),
        }
    )


@torch.no_grad()
def heldout_rewards(checkpoint: Path, data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The reward model's rewards of every held-out pair's chosen and rejected reply."""
    index = load_preference_index(data_dir)
    model = load_model(checkpoint, RewardModel)
    pairs = PreferencePairs(data_dir, index, "val")
    chosen, rejected = [], []
    for start in range(0, len(pairs), 16):
        batch = pairs.batch(list(range(start, min(start + 16, len(pairs)))))
        rewards = model.eval()(batch["input_ids"], batch["last_index"])
        chosen.append(rewards[: len(rewards) // 2].numpy())
        rejected.append(rewards[len(rewards) // 2 :].numpy())
    return np.concatenate(chosen), np.concatenate(rejected)


def reward_histogram_png(chosen: np.ndarray, rejected: np.ndarray) -> bytes:
    fig = figure(6, 3.5)
    ax = fig.subplots()
    bins = np.histogram_bin_edges(np.concatenate([chosen, rejected]), bins=20)
    ax.hist(chosen, bins=bins, alpha=0.6, label="chosen")
    ax.hist(rejected, bins=bins, alpha=0.6, label="rejected")
    ax.set_xlabel("reward")
    ax.set_ylabel("held-out replies")
    ax.legend()
    return png_bytes(fig)


@profiled("reference_logprobs")
class ReferenceLogprobsConfig(Config):
    batch_size: int = 8
    cpu_threads: int | None = None


@asset(
    group_name=POSTTRAINING_GROUP,
    pool=GLOBAL_ASSETS_POOL,
    code_version=REFERENCE_CODE_VERSION,
    deps=["preference_dataset"],
    description="The frozen reference (SFT) model's log-probabilities of every pair's chosen "
    "and rejected reply, computed once and keyed by the reference weights, the data version, "
    "the template and the truncation settings; DPO reads them and refuses any other key.",
)
def reference_logprobs(
    context: AssetExecutionContext, config: ReferenceLogprobsConfig, storage: StorageResource
) -> MaterializeResult:
    store = storage.get()
    if config.cpu_threads:
        torch.set_num_threads(config.cpu_threads)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, _, start = sft_model(store, tmp)
        _, data_dir = pair_data_dir(store, tmp)
        index = load_preference_index(data_dir)
        key = reference_key(weights_digest(checkpoint), index)
        version_id = content_version("reference_logprobs", REFERENCE_CODE_VERSION, {}, [key.id])

        def write(version) -> ShardManifest:  # noqa: ANN001
            model = load_model(checkpoint)
            device = pick_device("auto")
            local = Path(tmp) / "cache"
            model.to(device)
            rows = write_reference_cache(
                model, data_dir, index, key, local, config.batch_size, device, log=context.log.info
            )
            store.upload_dir(str(local), version.path())
            return ShardManifest(
                asset="reference_logprobs",
                counts={"pairs": rows},
                extra={"key": key.model_dump(), "key_id": key.id, "reference": start},
            )

        manifest = build_version(store, "reference_logprobs", None, version_id, write)
    return MaterializeResult(
        metadata={
            "reference": MetadataValue.text(manifest.extra["reference"]),
            "key": MetadataValue.json(manifest.extra["key"]),
            "pairs": MetadataValue.int(manifest.counts["pairs"]),
            **version_metadata(manifest),
        }
    )


@profiled("dpo_checkpoint")
class DPOAssetConfig(Config):
    """DPO of the SFT model against its cached log-probabilities. ``loss`` and ``beta``
    (0.1, Rafailov et al. 2023; each loss's own default in ``references/dpo.md``);
    ``label_smoothing`` is cDPO's / robust DPO's ε. Learning rate 5e-7 with a linear decay
    (Tulu 3's DPO for 8B models; smaller models take larger rates)."""

    loss: PreferenceLoss = "sigmoid"
    beta: float = 0.1
    label_smoothing: float = 0.0
    micro_batch_size: int = 4
    grad_accum_steps: int = 8
    max_steps: int = 500
    lr: float = 5e-7
    warmup_steps: int = 10
    eval_every: int = 100
    eval_batches: int = 8
    toxicity_prompts: int = TOXICITY_TRACKING_PROMPTS
    checkpoint_every: int = 100
    log_every: int = 10
    cpu_threads: int | None = None
    seed: int = 1337
    fresh: bool = False
    config_path: str = ""
    work_dir: str = ""

    def train_config(self, data_dir: str, init_path: str, reference: str) -> TrainConfig:
        fields = pair_fields(self, "dpo", self.lr, init_path)
        fields["preference"] = PreferenceConfig(dpo=PreferenceLossConfig(
            loss=self.loss, beta=self.beta, label_smoothing=self.label_smoothing))  # fmt: skip
        fields["reference_logprobs"] = reference
        return asset_train_config(fields, self.config_path, data_dir, self.toxicity_prompts)


@asset(
    group_name=POSTTRAINING_GROUP,
    pool=GLOBAL_ASSETS_POOL,
    deps=["reference_logprobs", "preference_dataset"],
    op_tags={"llmstack/gpu": "true"},
    description="The SFT model trained with a DPO-family loss (sigmoid, cDPO, robust, IPO, "
    "hinge, length-normalized) against the cached reference log-probabilities: implicit "
    "rewards, accuracy and margins on train and held-out pairs, samples, HF export.",
)
def dpo_checkpoint(
    context: AssetExecutionContext,
    config: DPOAssetConfig,
    storage: StorageResource,
    training: TrainingResource,
) -> MaterializeResult:
    store = storage.get()
    cache = read_manifest(store, "reference_logprobs", None)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, _, start = sft_model(store, tmp)
        dataset, data_dir = pair_data_dir(store, tmp)
        reference = local_folder(store, cache, tmp, "reference")
        run = run_training_asset(
            context, store, training, "dpo_checkpoint",
            config.train_config(str(data_dir), str(checkpoint), str(reference)),
            fresh=config.fresh, work_dir=config.work_dir,
        )  # fmt: skip
    return MaterializeResult(
        metadata={
            **training_metadata(context, store, "dpo_checkpoint", run),
            "start_model": MetadataValue.text(start),
            "reference": MetadataValue.text(f"reference_logprobs key {cache.extra['key_id']}"),
            "data_version": MetadataValue.text(str(dataset.content_version)),
        }
    )
