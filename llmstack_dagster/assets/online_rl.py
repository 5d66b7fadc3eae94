"""Posttraining, part 2: online reinforcement learning with GRPO.

``rl_prompts`` renders the prompts the policy practises on (GSM8K train questions with their
answers, red-team prompts from the train side of the split, ordinary requests) with the SFT
model's tokenizer. ``rl_checkpoint`` trains the DPO model (or the SFT model) with GRPO on its
own samples against the configured rewards: GSM8K exact match and format, the safety reward
from the refusal classifier, and the reward model; the run logs held-out GSM8K accuracy and
refusal rates beside the reward.
"""

import posixpath
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from llmstack_dagster.assets.common import (
    GLOBAL_ASSETS_POOL,
    chart_metadata,
    markdown_table,
    shared_data_dir,
    version_metadata,
)
from llmstack_dagster.assets.evaluation import load_refusal_classifier
from llmstack_dagster.assets.posttraining import POSTTRAINING_GROUP, local_folder, sft_model
from llmstack_dagster.assets.training_runs import (
    TOXICITY_TRACKING_PROMPTS,
    TrainedRun,
    asset_train_config,
    local_run_files,
    read_current_run,
    run_training_asset,
    training_metadata,
)
from llmstack_dagster.core.charts import figure, png_bytes
from llmstack_dagster.core.posttraining.grpo_config import GRPOConfig
from llmstack_dagster.core.posttraining.rl_prompts import (
    RLPromptSetConfig,
    attach_reward_files,
    build_rl_prompts,
    shared_rl_prompts,
)
from llmstack_dagster.core.storage import (
    ShardManifest,
    Storage,
    build_version,
    content_version,
    read_manifest,
)
from llmstack_dagster.core.training.config import EvalConfig, InitConfig, OptimConfig, TrainConfig
from llmstack_dagster.core.training.tokenizer import tokenizer_hash
from llmstack_dagster.profiles import profiled
from llmstack_dagster.resources.storage import StorageResource
from llmstack_dagster.resources.training import TrainingResource

RL_PROMPTS_CODE_VERSION = "1"
HELDOUT_TASK_METRICS = (
    "val/reward",
    "val/gsm8k_accuracy",
    "val/refusal_rate",
    "val/over_refusal_rate",
)


@profiled("rl_prompts")
class RLPromptsConfig(Config):
    """Caps per source (None: all of GSM8K train's 7,473 questions, the red-team train side,
    the 175 self-instruct seed tasks), 5% held out, prompts of at most 512 tokens."""

    gsm8k: int | None = None
    red_team: int | None = None
    safe: int | None = None
    val_fraction: float = 0.05
    max_prompt_len: int = 512
    seed: int = 0


@asset(
    group_name=POSTTRAINING_GROUP,
    pool=GLOBAL_ASSETS_POOL,
    code_version=RL_PROMPTS_CODE_VERSION,
    deps=["sft_checkpoint"],
    description="Prompts for online RL in the one chat format: GSM8K train questions with "
    "their final answers (verifiable rewards), red-team prompts from the train side of the "
    "split (harmful) and self-instruct seed tasks (safe); a seeded held-out split; prompts "
    "too long dropped with a reason.",
)
def rl_prompts(
    context: AssetExecutionContext, config: RLPromptsConfig, storage: StorageResource
) -> MaterializeResult:
    store = storage.get()
    data_dir = shared_data_dir()
    cfg = RLPromptSetConfig(**config.model_dump())
    with tempfile.TemporaryDirectory() as tmp:
        _, tokenizer, start = sft_model(store, tmp)
        version_id = content_version(
            "rl_prompts", RL_PROMPTS_CODE_VERSION, config.model_dump(), [tokenizer_hash(tokenizer)]
        )

        def write(version) -> ShardManifest:  # noqa: ANN001
            _, shards, drops, counts = build_rl_prompts(
                store, version, shared_rl_prompts(data_dir, cfg), tokenizer, cfg
            )
            per_source = {name: dict(c) for name, c in counts.items()}
            totals = {
                k: sum(c[k] for c in per_source.values())
                for k in ("read", "train", "val", "too_long")
            }
            return ShardManifest(
                asset="rl_prompts",
                shards=shards,
                drops=drops,
                counts=totals,
                extra={"start_model": start, "sources": per_source},
            )

        manifest = build_version(store, "rl_prompts", None, version_id, write)
    per_source = [{"source": k, **v} for k, v in manifest.extra["sources"].items()]
    return MaterializeResult(
        metadata={
            "start_model": MetadataValue.text(manifest.extra["start_model"]),
            "counts": MetadataValue.json(manifest.counts),
            "per_source": MetadataValue.md(markdown_table(per_source)),
            **version_metadata(manifest),
        }
    )


@profiled("rl_checkpoint")
class RLAssetConfig(Config):
    """GRPO from the DPO model (``start_from``; Tulu 3 runs RL with verifiable rewards after
    DPO). Sampling, clipping and KL defaults from ``GRPOConfig`` (G = 8, temperature 1.0,
    ε = 0.2, β = 0.0); learning rate 1e-6, constant after no warm-up (TRL's GRPOConfig);
    ``rewards``: weights of ``gsm8k``, ``format``, ``safety``, ``reward_model``. A step is
    ``micro_batch_size * grad_accum_steps`` completions: 16 prompts x 8 here."""

    start_from: Literal["dpo", "sft"] = "dpo"
    rewards: dict[str, float] = Field(
        default_factory=lambda: {"gsm8k": 1.0, "format": 0.1, "safety": 1.0}
    )
    group_size: int = 8
    temperature: float = 1.0
    max_new_tokens: int = 512
    epsilon: float = 0.2
    beta: float = 0.0
    scale_rewards: bool = True
    iterations: int = 1
    micro_batch_size: int = 16
    grad_accum_steps: int = 8
    max_steps: int = 200
    lr: float = 1e-6
    eval_every: int = 25
    eval_prompts: int = 64
    generation_batch_size: int = 64
    toxicity_prompts: int = TOXICITY_TRACKING_PROMPTS
    checkpoint_every: int = 25
    log_every: int = 1
    cpu_threads: int | None = None
    seed: int = 1337
    fresh: bool = False
    config_path: str = ""
    work_dir: str = ""

    def train_config(self, data_dir: str, init_path: str) -> TrainConfig:
        rl = GRPOConfig(
            group_size=self.group_size,
            temperature=self.temperature,
            max_new_tokens=self.max_new_tokens,
            epsilon=self.epsilon,
            beta=self.beta,
            scale_rewards=self.scale_rewards,
            iterations=self.iterations,
            rewards=self.rewards,
            generation_batch_size=self.generation_batch_size,
            eval_prompts=self.eval_prompts,
        )
        fields = {
            "objective": "grpo",
            "micro_batch_size": self.micro_batch_size,
            "grad_accum_steps": self.grad_accum_steps,
            "max_steps": self.max_steps,
            "checkpoint_every": self.checkpoint_every,
            "log_every": self.log_every,
            "cpu_threads": self.cpu_threads,
            "seed": self.seed,
            "optim": OptimConfig(
                lr=self.lr, warmup_steps=0, min_lr_ratio=1.0, schedule="linear", weight_decay=0.0
            ),
            "eval": EvalConfig(every=self.eval_every, batches=1, max_new_tokens=48),
            "init": InitConfig(path=init_path),
            "rl": rl,
        }
        return asset_train_config(fields, self.config_path, data_dir, self.toxicity_prompts)


def start_checkpoint(store: Storage, start_from: str, tmp: str) -> tuple[Path, str]:
    """The final checkpoint of the start stage and a description."""
    if start_from == "sft":
        checkpoint, _, described = sft_model(store, tmp)
        return checkpoint, described
    current = read_current_run(store, "dpo_checkpoint")
    checkpoint, _ = local_run_files(store, current, tmp)
    return checkpoint, f"dpo_checkpoint run {current['run_id']} step {current['step']}"


def reward_curve_png(metrics: list[dict]) -> bytes:
    """The sampled reward per step and the held-out task metrics per evaluation."""
    fig = figure(6, 3.5)
    ax = fig.subplots()
    train = [(m["step"], m["train/reward"]) for m in metrics if "train/reward" in m]
    if train:
        ax.plot(*zip(*train, strict=True), label="reward (samples)")
    for key, label in (
        ("val/reward", "reward (held-out, greedy)"),
        ("val/gsm8k_accuracy", "GSM8K accuracy (held-out)"),
        ("val/refusal_rate", "refusal rate (held-out harmful)"),
        ("val/over_refusal_rate", "over-refusal (held-out safe)"),
    ):
        points = [(m["step"], m[key]) for m in metrics if key in m]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    return png_bytes(fig)


@asset(
    group_name=POSTTRAINING_GROUP,
    pool=GLOBAL_ASSETS_POOL,
    deps=["rl_prompts", "dpo_checkpoint", "reward_model", "refusal_classifier"],
    op_tags={"llmstack/gpu": "true"},
    description="Online RL with GRPO on the policy's own samples: groups of completions per "
    "prompt, group-relative advantages, clipped objective, optional KL to the start model; "
    "rewards from GSM8K exact match and format, the refusal classifier and the reward model; "
    "held-out GSM8K accuracy and refusal rates logged beside the reward; HF export.",
)
def rl_checkpoint(
    context: AssetExecutionContext,
    config: RLAssetConfig,
    storage: StorageResource,
    training: TrainingResource,
) -> MaterializeResult:
    store = storage.get()
    with tempfile.TemporaryDirectory() as tmp:
        init, start = start_checkpoint(store, config.start_from, tmp)
        reward = None
        if "reward_model" in config.rewards:
            reward, _ = local_run_files(store, read_current_run(store, "reward_model"), tmp)
        run, data_version = run_grpo(
            context, store, training, "rl_checkpoint", config, init, reward, tmp
        )
    return MaterializeResult(
        metadata={
            **training_metadata(context, store, "rl_checkpoint", run),
            **rl_metadata(context, store, "rl_checkpoint", run, config),
            "start_model": MetadataValue.text(start),
            "data_version": MetadataValue.text(data_version),
        }
    )


def run_grpo(
    context: AssetExecutionContext,
    store: Storage,
    training: TrainingResource,
    asset: str,
    config: RLAssetConfig,
    init: Path,
    reward_model: Path | None,
    tmp: str,
) -> tuple[TrainedRun, str]:
    """GRPO from ``init`` on the ``rl_prompts`` folder, with the refusal classifier and the
    given reward model (its weights) in the run's data folder: the run and the prompts'
    content version (``rl_cai_checkpoint`` uses it with the AI-feedback preference model)."""
    prompts = read_manifest(store, "rl_prompts", None)
    data_dir = Path(tmp) / "rl_data"
    shutil.copytree(local_folder(store, prompts, tmp, "rl_prompts"), data_dir)
    classifier, _ = load_refusal_classifier(store)
    attach_reward_files(data_dir, reward_model, classifier.to_bytes())
    run = run_training_asset(
        context,
        store,
        training,
        asset,
        config.train_config(str(data_dir), str(init)),
        fresh=config.fresh,
        work_dir=config.work_dir,
    )
    return run, str(prompts.content_version)


def rl_metadata(
    context: AssetExecutionContext,
    store: Storage,
    asset: str,
    run: TrainedRun,
    config: RLAssetConfig,
) -> dict[str, Any]:
    """The rewards, the reward curve and the final held-out task metrics of a GRPO run."""
    chart_rel = posixpath.join(asset, "rewards.png")
    store.write_bytes(chart_rel, reward_curve_png(run.outcome.metrics))
    final = run.outcome.final.get("metrics", {})
    task = {k: round(float(v), 4) for k, v in final.items() if k in HELDOUT_TASK_METRICS}
    return {
        "rewards": MetadataValue.json(dict(config.rewards)),
        "heldout_task_metrics": MetadataValue.json(task),
        "reward_curve": chart_metadata(context.instance, store, chart_rel, "GRPO rewards"),
    }
