"""Midtraining, part 1: continued pretraining on a target domain with replay.

``base_model`` (the pretrained checkpoint, or any Hugging Face Llama model imported from a
folder or a GGUF file) -> ``midtraining_mixture`` (the target domain's curated documents plus
a replay share of the pretraining mixture, tokenized with the base model's tokenizer) ->
``midtrained_checkpoint`` (the engine's next-token task from the base weights), whose
``no_forgetting`` check compares each domain's bits per byte before and after.
"""

import hashlib
import posixpath
import tempfile
from pathlib import Path
from typing import Any, Literal

from dagster import (
    AllPartitionMapping,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)

from llmstack_dagster.assets.common import (
    GLOBAL_ASSETS_POOL,
    chart_metadata,
    domain_partitions,
    markdown_table,
    resume_key,
    version_metadata,
)
from llmstack_dagster.assets.training_runs import (
    TOXICITY_TRACKING_PROMPTS,
    asset_train_config,
    read_current_run,
    run_training_asset,
    training_metadata,
)
from llmstack_dagster.core.charts import figure, png_bytes
from llmstack_dagster.core.midtraining.forgetting import forgetting_rows, forgotten_domains
from llmstack_dagster.core.midtraining.mixture import (
    MidtrainingMixtureConfig,
    build_midtraining_mixture,
)
from llmstack_dagster.core.storage import ShardManifest, Storage, read_manifest
from llmstack_dagster.core.training.config import EvalConfig, InitConfig, OptimConfig, TrainConfig
from llmstack_dagster.core.training.hf_import import import_hf, smollm2_gguf
from llmstack_dagster.core.training.init_weights import init_model_config, weights_digest
from llmstack_dagster.core.training.tokenizer import TOKENIZER_FILE
from llmstack_dagster.profiles import profiled
from llmstack_dagster.resources.shard_map import ShardMapResource
from llmstack_dagster.resources.storage import StorageResource
from llmstack_dagster.resources.training import TrainingResource

MIDTRAINING_GROUP = "midtraining"
BASE_MODEL = "base_model"
BASE_MODEL_FILE = "base_model/current.json"
SMOLLM2 = "smollm2"  # hf_path shorthand: the SmolLM2-135M-Instruct GGUF cached by set-up


@profiled("base_model")
class BaseModelConfig(Config):
    """``pretrained_checkpoint`` (default): the pipeline's own model. ``hf``: a Hugging Face
    Llama-architecture model from ``hf_path``, a local folder or a ``.gguf`` file (``smollm2``:
    SmolLM2-135M-Instruct, installed by set-up)."""

    source: Literal["pretrained_checkpoint", "hf"] = "pretrained_checkpoint"
    hf_path: str = ""


def hf_source(hf_path: str) -> tuple[Path, str | None]:
    """(folder, gguf file name or None) of an ``hf_path``."""
    if hf_path == SMOLLM2:
        found = smollm2_gguf()
        if found is None:
            raise FileNotFoundError(
                "SmolLM2-135M-Instruct is not cached: run scripts/fetch_smollm2.sh"
            )
        return found.parent, found.name
    path = Path(hf_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"base_model: hf_path {path} does not exist")
    return (path.parent, path.name) if path.suffix == ".gguf" else (path, None)


def import_key(folder: Path, gguf_file: str | None) -> str:
    """Names an import by its source's path, size and modification time."""
    source = folder / gguf_file if gguf_file else folder / "config.json"
    stat = source.stat()
    key = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _import_hf_model(store: Storage, hf_path: str, tmp: str) -> tuple[str, str]:
    """Import once per source (a GGUF load takes about a minute on two cores); returns the
    weights folder and the tokenizer file, relative to the storage root."""
    folder, gguf_file = hf_source(hf_path)
    rel = posixpath.join(BASE_MODEL, "imports", import_key(folder, gguf_file))
    local = store.local_path(rel)
    if not store.exists(posixpath.join(rel, "model.safetensors")):
        dest = Path(local) if local else Path(tmp) / "import"
        import_hf(folder, dest, gguf_file=gguf_file)
        if local is None:
            store.upload_dir(str(dest), rel)
    return rel, posixpath.join(rel, "tokenizer.json")


def target_validation_domains(mixture: ShardManifest) -> set[str]:
    """The validation domains of the midtraining targets: each target domain's own
    validation documents and its held-out ones (``<domain>_target``)."""
    return {f"{d}{suffix}" for d in mixture.extra["target_domains"] for suffix in ("", "_target")}


@asset(
    group_name=MIDTRAINING_GROUP,
    pool=GLOBAL_ASSETS_POOL,
    deps=["pretrained_checkpoint"],
    description="The weights and tokenizer midtraining starts from: the pretrained checkpoint, "
    "or a Hugging Face Llama model (folder or GGUF) imported into the project's model.",
)
def base_model(
    context: AssetExecutionContext, config: BaseModelConfig, storage: StorageResource
) -> MaterializeResult:
    store = storage.get()
    with tempfile.TemporaryDirectory() as tmp:
        if config.source == "hf":
            weights_rel, tokenizer_rel = _import_hf_model(store, config.hf_path, tmp)
            source = f"hf:{config.hf_path}"
        else:
            current = read_current_run(store, "pretrained_checkpoint")
            weights_rel = posixpath.join(current["run_rel"], current["checkpoint_rel"])
            tokenizer_rel = posixpath.join(current["run_rel"], "tokenizer.json")
            source = f"pretrained_checkpoint run {current['run_id']} step {current['step']}"
        weights, _ = local_base_model(store, {"weights_rel": weights_rel,
                                              "tokenizer_rel": tokenizer_rel}, tmp)  # fmt: skip
        model = init_model_config(weights)
        record = {
            "source": source,
            "weights_rel": weights_rel,
            "tokenizer_rel": tokenizer_rel,
            "weights_sha256": weights_digest(weights),
            "model": model.model_dump(),
        }
    store.write_json(BASE_MODEL_FILE, record)
    context.log.info(f"{source}, {model.n_layers} layers, vocab {model.vocab_size}")
    return MaterializeResult(
        metadata={
            "source": MetadataValue.text(source),
            "weights": MetadataValue.path(store.url(weights_rel)),
            "weights_sha256": MetadataValue.text(record["weights_sha256"]),
            "model": MetadataValue.json(record["model"]),
        }
    )


def local_base_model(store: Storage, record: dict[str, Any], tmp: str) -> tuple[Path, Path]:
    """The base model's weights folder and tokenizer file as local paths."""
    weights = store.local_path(record["weights_rel"])
    tokenizer = store.local_path(record["tokenizer_rel"])
    if weights is None or tokenizer is None:  # with its tokenizer_config.json (the eos token)
        weights = store.download_dir(record["weights_rel"], str(Path(tmp) / "base"))
        folder = posixpath.dirname(record["tokenizer_rel"])
        tokenizer = str(Path(store.download_dir(folder, str(Path(tmp) / "tok"))) / TOKENIZER_FILE)
    return Path(weights), Path(tokenizer)


@profiled("midtraining_mixture")
class MidtrainingMixtureAssetConfig(Config):
    """Target domains and the token budget; replay 5% of tokens by default (Ibrahim et al.
    2024: about 5% for weak distribution shifts, up to 25% for strong ones)."""

    target_domains: list[str] = ["code"]
    token_budget: int = 500_000_000
    replay_fraction: float = 0.05
    max_target_epochs: float = 4.0
    target_val_fraction: float = 0.05
    seed: int = 0


@asset(
    group_name=MIDTRAINING_GROUP,
    pool=GLOBAL_ASSETS_POOL,
    deps=[
        BASE_MODEL,
        "sampled_mixture",
        "tokenized_shards",
        AssetDep("dsir_selected", partition_mapping=AllPartitionMapping()),
    ],
    description="Continued-pretraining data: the target domains' curated, DSIR-selected "
    "documents plus replay of the pretraining mixture, tokenized with the base model's "
    "tokenizer; validation holds the pretraining validation split and the target's held-out "
    "documents.",
)
def midtraining_mixture(
    context: AssetExecutionContext,
    config: MidtrainingMixtureAssetConfig,
    storage: StorageResource,
    shard_map: ShardMapResource,
) -> MaterializeResult:
    store = storage.get()
    unknown = set(config.target_domains) - set(domain_partitions.get_partition_keys())
    if unknown:
        raise ValueError(f"midtraining_mixture: unknown target domains {sorted(unknown)}")
    record = store.read_json(BASE_MODEL_FILE)
    with tempfile.TemporaryDirectory() as tmp:
        _, tokenizer = local_base_model(store, record, tmp)
        manifest = build_midtraining_mixture(
            store,
            targets={d: read_manifest(store, "dsir_selected", d) for d in config.target_domains},
            replay=read_manifest(store, "sampled_mixture", None),
            pretrain_val_ids=read_manifest(store, "tokenized_shards", None).extra["val_ids"],
            tokenizer_path=tokenizer,
            config=MidtrainingMixtureConfig(
                target_domains=config.target_domains,
                token_budget=config.token_budget,
                replay_fraction=config.replay_fraction,
                max_target_epochs=config.max_target_epochs,
                target_val_fraction=config.target_val_fraction,
                seed=config.seed,
            ),
            shard_map=shard_map.get(),
            resume_key=resume_key(context),
        )
    extra = manifest.extra
    for warning in extra.get("warnings", []):
        context.log.warning(f"midtraining_mixture: {warning}")
    chart_rel = posixpath.join(manifest.folder, "composition.png")
    store.write_bytes(chart_rel, composition_chart_png(extra["composition"]))
    return MaterializeResult(
        metadata={
            "composition": MetadataValue.md(extra["composition_markdown"]),
            "composition_chart": chart_metadata(
                context.instance, store, chart_rel, "training tokens by source and domain"
            ),
            "counts": MetadataValue.json(manifest.counts),
            "replay_fraction": MetadataValue.float(float(extra["realized_replay_fraction"])),
            "warnings": MetadataValue.json(extra.get("warnings", [])),
            "base_model": MetadataValue.text(record["source"]),
            **version_metadata(manifest),
        }
    )


@profiled("midtrained_checkpoint")
class MidtrainAssetConfig(Config):
    """Continued pretraining from ``base_model``: re-warm then re-decay (cosine, Ibrahim et al.
    2024) or warmup-stable-decay with a cooldown share; the optimizer state of a pipeline
    checkpoint is loaded or fresh. ``max_bpb_increase`` gates forgetting: the check fails when
    a non-target domain's bits per byte rise by more than this share."""

    seq_len: int = 1024
    micro_batch_size: int = 16
    grad_accum_steps: int = 8
    max_steps: int = 2000
    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20  # 1% of the steps, as in Ibrahim et al. 2024
    schedule: Literal["cosine", "wsd"] = "cosine"
    cooldown_fraction: float = 0.2
    load_optimizer: bool = False
    eval_every: int = 200
    eval_batches: int = 4
    toxicity_prompts: int = TOXICITY_TRACKING_PROMPTS
    checkpoint_every: int = 200
    log_every: int = 10
    cpu_threads: int | None = None
    seed: int = 1337
    max_bpb_increase: float = 0.10
    fresh: bool = False
    config_path: str = ""
    work_dir: str = ""

    def train_config(self, data_dir: str, init_path: str) -> TrainConfig:
        fields = {
            "seq_len": self.seq_len,
            "micro_batch_size": self.micro_batch_size,
            "grad_accum_steps": self.grad_accum_steps,
            "max_steps": self.max_steps,
            "checkpoint_every": self.checkpoint_every,
            "log_every": self.log_every,
            "cpu_threads": self.cpu_threads,
            "seed": self.seed,
            "optim": OptimConfig(
                lr=self.lr,
                min_lr_ratio=self.min_lr_ratio,
                warmup_steps=self.warmup_steps,
                schedule=self.schedule,
                cooldown_fraction=self.cooldown_fraction,
            ),
            "eval": EvalConfig(every=self.eval_every, batches=self.eval_batches, max_new_tokens=24),
            "init": InitConfig(path=init_path, load_optimizer=self.load_optimizer),
        }
        return asset_train_config(fields, self.config_path, data_dir, self.toxicity_prompts)


def forgetting_chart_png(rows: list[dict[str, Any]]) -> bytes:
    """Bits per byte per domain, base against midtrained, as a bar chart."""
    labels = [f"{r['domain']}*" if r["target"] else r["domain"] for r in rows]
    xs = range(len(rows))
    fig = figure(1.5 + 0.9 * len(rows), 3.8)
    ax = fig.subplots()
    ax.bar([x - 0.2 for x in xs], [r["base_bpb"] for r in rows], width=0.4, label="base")
    midtrained = [r["midtrained_bpb"] for r in rows]
    ax.bar([x + 0.2 for x in xs], midtrained, width=0.4, label="midtrained")
    ax.set_xticks(list(xs), labels, rotation=30, ha="right")
    ax.set_ylabel("bits per byte (* target)")
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    return png_bytes(fig)


def composition_chart_png(rows: list[dict[str, Any]]) -> bytes:
    """Share of the training tokens per source and domain, as horizontal bars."""
    train = [r for r in rows if r["split"] == "train"]
    fig = figure(7, 1.5 + 0.4 * len(train))
    ax = fig.subplots()
    ax.barh(range(len(train)), [r["share"] for r in train],
            color=["#dd8452" if r["source"] == "replay" else "#4c72b0" for r in train])  # fmt: skip
    ax.set_yticks(range(len(train)), [f"{r['source']}: {r['domain']}" for r in train])
    ax.invert_yaxis()
    ax.set_xlabel("share of training tokens")
    ax.set_title("Midtraining mixture: target and replay")
    return png_bytes(fig)


@asset(
    group_name=MIDTRAINING_GROUP,
    pool=GLOBAL_ASSETS_POOL,
    deps=["midtraining_mixture", BASE_MODEL],
    op_tags={"llmstack/gpu": "true"},
    check_specs=[
        AssetCheckSpec(
            "no_forgetting",
            asset="midtrained_checkpoint",
            blocking=True,  # stages trained from a model that forgot do not run after it
            description="No non-target domain's validation bits per byte rose by more than "
            "max_bpb_increase (default 10%) against the base model.",
        )
    ],
    description="The base model continued on the midtraining mixture by the training engine; "
    "per-domain validation loss and bits per byte of the base and the midtrained model.",
)
def midtrained_checkpoint(
    context: AssetExecutionContext,
    config: MidtrainAssetConfig,
    storage: StorageResource,
    training: TrainingResource,
) -> MaterializeResult:
    store = storage.get()
    shards = read_manifest(store, "midtraining_mixture", None)
    record = store.read_json(BASE_MODEL_FILE)
    targets = target_validation_domains(shards)
    with tempfile.TemporaryDirectory() as tmp:
        weights, _ = local_base_model(store, record, tmp)
        data_dir = store.local_path(shards.folder) or store.download_dir(
            shards.folder, str(Path(tmp) / "data")
        )
        run = run_training_asset(
            context,
            store,
            training,
            "midtrained_checkpoint",
            config.train_config(data_dir, str(weights)),
            fresh=config.fresh,
            work_dir=config.work_dir,
        )
    rows = forgetting_rows(run.outcome.metrics, targets)
    forgotten = forgotten_domains(rows, config.max_bpb_increase)
    chart_rel = posixpath.join("midtrained_checkpoint", "forgetting.png")
    store.write_bytes(chart_rel, forgetting_chart_png(rows))
    check = AssetCheckResult(
        check_name="no_forgetting",
        passed=not forgotten,
        severity=AssetCheckSeverity.ERROR,
        description=(
            f"bits per byte rose by more than {config.max_bpb_increase:.0%} on "
            + ", ".join(forgotten)
            if forgotten
            else f"no non-target domain rose by more than {config.max_bpb_increase:.0%}"
        ),
        metadata={"forgetting": MetadataValue.md(markdown_table(rows))},
    )
    return MaterializeResult(
        metadata={
            **training_metadata(context, store, "midtrained_checkpoint", run),
            "base_model": MetadataValue.text(record["source"]),
            "target_domains": MetadataValue.json(sorted(targets)),
            "forgetting": MetadataValue.md(markdown_table(rows)),
            "forgetting_chart": chart_metadata(
                context.instance, store, chart_rel, "bits per byte, base vs midtrained"
            ),
            "data_version": MetadataValue.text(str(shards.content_version)),
        },
        check_results=[check],
    )
