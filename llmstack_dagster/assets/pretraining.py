"""Pretraining: ``tokenizer`` -> ``tokenized_shards`` -> ``pretrained_checkpoint``.

The checkpoint asset never trains in its own process: it hands a :class:`TrainConfig` to the
``training`` resource (local Pipes subprocess by default, Modal on cloud GPUs), which streams
metrics and logs back into Dagster while the run goes on. Each run trains in its own folder,
``pretrained_checkpoint/runs/<identity>/`` (see ``assets/training_runs.py``).
"""

import tempfile
from pathlib import Path

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from llmstack_dagster.assets.common import (
    GLOBAL_ASSETS_POOL,
    TOKENIZER_REL,
    markdown_table,
    resume_key,
    version_metadata,
)
from llmstack_dagster.assets.training_runs import (
    TOXICITY_TRACKING_PROMPTS,
    asset_train_config,
    run_training_asset,
    training_metadata,
)
from llmstack_dagster.core.storage import Storage, iter_shard_tables, read_manifest
from llmstack_dagster.core.training.config import EvalConfig, OptimConfig, TrainConfig
from llmstack_dagster.core.training.token_shards import CODE_VERSION as TOKEN_SHARDS_CODE_VERSION
from llmstack_dagster.core.training.token_shards import (
    TokenShardConfig,
    TokenShardIndex,
    manifest_hash,
    run_token_shards,
)
from llmstack_dagster.core.training.tokenizer import (
    TOKENIZER_FILE,
    TokenizerConfig,
    save_tokenizer,
    special_token_ids,
    tokenizer_hash,
    train_tokenizer,
)
from llmstack_dagster.profiles import profiled
from llmstack_dagster.resources.shard_map import ShardMapResource
from llmstack_dagster.resources.storage import StorageResource
from llmstack_dagster.resources.training import TrainingResource

TRAINING_GROUP = "training"


def mixture_texts(store: Storage):
    """Every text of the sampled mixture, streamed shard by shard."""
    mixture = read_manifest(store, "sampled_mixture", None)
    for _, table in iter_shard_tables(store, mixture.shards, columns=["text"]):
        yield from table.column("text").to_pylist()


def local_tokenizer(store: Storage, folder: str) -> Path:
    """The stored tokenizer.json copied into a local folder."""
    path = Path(folder) / TOKENIZER_FILE
    path.write_bytes(store.read_bytes(TOKENIZER_REL))
    return path


@profiled("tokenizer")
class TokenizerAssetConfig(Config):
    """32k for real runs; the demo profile uses 4096."""

    vocab_size: int = 32768
    min_frequency: int = 2


@asset(
    group_name=TRAINING_GROUP,
    pool=GLOBAL_ASSETS_POOL,
    deps=["sampled_mixture"],
    description="Byte-level BPE (Hugging Face tokenizers) trained on the sampled mixture, with "
    "BOS/EOS/PAD and chat-role special tokens; loadable by PreTrainedTokenizerFast.",
)
def tokenizer(
    context: AssetExecutionContext, config: TokenizerAssetConfig, storage: StorageResource
) -> MaterializeResult:
    store = storage.get()
    tok = train_tokenizer(
        mixture_texts(store),
        TokenizerConfig(vocab_size=config.vocab_size, min_frequency=config.min_frequency),
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = save_tokenizer(tok, Path(tmp))
        store.write_bytes(TOKENIZER_REL, path.read_bytes())
        digest = tokenizer_hash(path)
    sample = "Data, data everywhere: curating a corpus for a language model."
    pieces = tok.encode(sample).tokens
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(store.url(TOKENIZER_REL)),
            "vocab_size": MetadataValue.int(tok.get_vocab_size()),
            "special_tokens": MetadataValue.json(special_token_ids(tok)),
            "sha256": MetadataValue.text(digest),
            "sample": MetadataValue.md(
                f"`{sample}` -> {len(pieces)} tokens: `{' | '.join(pieces)}`"
            ),
        }
    )


@profiled("tokenized_shards")
class TokenShardsAssetConfig(Config):
    val_fraction: float = 0.005
    min_val_docs: int = 2
    seed: int = 0


@asset(
    code_version=TOKEN_SHARDS_CODE_VERSION,
    group_name=TRAINING_GROUP,
    pool=GLOBAL_ASSETS_POOL,
    deps=["sampled_mixture", "tokenizer"],
    description="The mixture tokenized into packed uint16/uint32 token shards with an index, "
    "EOS between documents, and a held-out validation split per domain.",
)
def tokenized_shards(
    context: AssetExecutionContext,
    config: TokenShardsAssetConfig,
    storage: StorageResource,
    shard_map: ShardMapResource,
) -> MaterializeResult:
    store = storage.get()
    mixture = read_manifest(store, "sampled_mixture", None)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = run_token_shards(
            store,
            mixture,
            local_tokenizer(store, tmp),
            TokenShardConfig(
                val_fraction=config.val_fraction,
                min_val_docs=config.min_val_docs,
                seed=config.seed,
            ),
            mixture_hash=manifest_hash(mixture),
            shard_map=shard_map.get(),
            resume_key=resume_key(context),
        )
    extra = manifest.extra
    index = TokenShardIndex.model_validate_json(store.read_bytes(extra["index"]))
    for warning in index.warnings:
        context.log.warning(f"tokenized_shards: {warning}")
    return MaterializeResult(
        metadata={
            "shards": MetadataValue.json([store.url(s.path) for s in manifest.shards]),
            "counts": MetadataValue.json(manifest.counts),
            "per_domain": MetadataValue.md(markdown_table(domain_split_rows(index))),
            "warnings": MetadataValue.json(index.warnings),
            "dtype": MetadataValue.text(str(extra.get("dtype"))),
            **version_metadata(manifest),
        }
    )


def domain_split_rows(index: TokenShardIndex) -> list[dict]:
    """One row per domain of the index: train and val documents and tokens, the few-docs flag."""
    return [
        {"domain": domain, **stats.model_dump(exclude={"val_text_bytes"})}
        for domain, stats in index.domains.items()
    ]


@profiled("pretrained_checkpoint")
class PretrainAssetConfig(Config):
    """Defaults size a real run: the ~125M "d12" preset at sequence length 1024 and about 131k
    tokens per optimizer step (GPU). The demo profile (``llmstack_dagster.profiles``) shrinks it
    to the tiny preset on CPU. ``config_path`` (YAML) may set any TrainConfig field, e.g.
    ``compile: true``. A re-materialization resumes only a run of the same identity (config,
    data version, initial weights); ``fresh`` starts a new one anyway."""

    preset: str = "d12"
    seq_len: int = 1024
    micro_batch_size: int = 16
    grad_accum_steps: int = 8
    max_steps: int = 5000
    lr: float = 6e-4
    warmup_steps: int = 200
    eval_every: int = 500
    checkpoint_every: int = 500
    log_every: int = 10
    toxicity_prompts: int = TOXICITY_TRACKING_PROMPTS
    cpu_threads: int | None = None
    seed: int = 1337
    config_path: str = ""
    work_dir: str = ""
    fresh: bool = False  # start a new run even when one with the same identity exists

    def train_config(self, data_dir: str) -> TrainConfig:
        fields = {
            "preset": self.preset,
            "seq_len": self.seq_len,
            "micro_batch_size": self.micro_batch_size,
            "grad_accum_steps": self.grad_accum_steps,
            "max_steps": self.max_steps,
            "checkpoint_every": self.checkpoint_every,
            "log_every": self.log_every,
            "cpu_threads": self.cpu_threads,
            "seed": self.seed,
            "optim": OptimConfig(lr=self.lr, warmup_steps=self.warmup_steps),
            "eval": EvalConfig(every=self.eval_every, batches=4, max_new_tokens=24),
        }
        return asset_train_config(fields, self.config_path, data_dir, self.toxicity_prompts)


@asset(
    group_name=TRAINING_GROUP,
    pool=GLOBAL_ASSETS_POOL,
    deps=["tokenized_shards", "tokenizer"],
    op_tags={"llmstack/gpu": "true"},
    description="A Llama-style model pretrained on the token shards by the training resource "
    "(exact-resume checkpoints, live metrics, validation loss and bits-per-byte per domain, "
    "sample generations, Hugging Face export).",
)
def pretrained_checkpoint(
    context: AssetExecutionContext,
    config: PretrainAssetConfig,
    storage: StorageResource,
    training: TrainingResource,
) -> MaterializeResult:
    store = storage.get()
    shards = read_manifest(store, "tokenized_shards", None)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = store.local_path(shards.folder)
        if data_dir is None:  # remote root: stage the shards locally
            data_dir = store.download_dir(shards.folder, str(Path(tmp) / "data"))
        run = run_training_asset(
            context,
            store,
            training,
            "pretrained_checkpoint",
            config.train_config(data_dir),
            fresh=config.fresh,
            work_dir=config.work_dir,
        )
    return MaterializeResult(
        metadata={
            **training_metadata(context, store, "pretrained_checkpoint", run),
            "data_version": MetadataValue.text(str(shards.content_version)),
        }
    )
