"""Midtraining, part 2: supervised fine-tuning in one chat format.

``sft_dataset`` reads the configured sources into conversations, quarantines malformed
records, drops exact duplicates and examples contaminated by an evaluation set, splits off
held-out conversations, and renders them with the start model's tokenizer (ids and the
assistant-only loss mask). ``sft_checkpoint`` trains the engine's SFT task from that model.
"""

import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from dagster import (
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)

from llmstack_dagster.assets.common import (
    GLOBAL_ASSETS_POOL,
    chart_metadata,
    markdown_table,
    shared_data_dir,
    version_metadata,
)
from llmstack_dagster.assets.midtraining import BASE_MODEL_FILE, local_base_model
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
from llmstack_dagster.core.chat.sft_build import Kept, SFTBuildConfig, stream_conversations
from llmstack_dagster.core.chat.sft_render import (
    length_histogram,
    marked_sample,
    render_sft_dataset,
)
from llmstack_dagster.core.chat.sources import demo_sft_sources, shared_sft_sources
from llmstack_dagster.core.schema import DROP_SCHEMA
from llmstack_dagster.core.storage import (
    ShardManifest,
    ShardWriter,
    Storage,
    build_version,
    content_version,
    read_manifest,
)
from llmstack_dagster.core.training.config import EvalConfig, InitConfig, OptimConfig, TrainConfig
from llmstack_dagster.core.training.tokenizer import load_tokenizer, tokenizer_hash
from llmstack_dagster.profiles import profiled
from llmstack_dagster.resources.storage import StorageResource
from llmstack_dagster.resources.training import TrainingResource

SFT_GROUP = "midtraining"
SFT_CODE_VERSION = "1"
StartFrom = Literal["midtrained_checkpoint", "pretrained_checkpoint", "base_model"]


def start_model(store: Storage, start_from: str, tmp: str) -> tuple[Path, Path, str]:
    """The weights folder, the tokenizer file (its folder holds an imported tokenizer's config
    and chat template) and a description of the model SFT starts from."""
    if start_from == "base_model":
        record = store.read_json(BASE_MODEL_FILE)
        weights, tokenizer = local_base_model(store, record, tmp)
        return weights, tokenizer, f"base_model ({record['source']})"
    current = read_current_run(store, start_from)
    weights, tokenizer = local_run_files(store, current, tmp)
    if start_from == "midtrained_checkpoint":  # the base model's tokenizer, with its template
        _, tokenizer = local_base_model(store, store.read_json(BASE_MODEL_FILE), tmp)
    return weights, tokenizer, f"{start_from} run {current['run_id']} step {current['step']}"


@profiled("sft_dataset")
class SFTDatasetConfig(Config):
    """``sources``: ``shared`` (T0, Self-Instruct, GSM8K train from ``../shared/data``) or
    ``demo`` (the bundled subset). Held-out share 5%; conversations render up to ``max_len``
    tokens (longer ones are truncated, and dropped when no assistant token would remain)."""

    sources: Literal["shared", "demo"] = "shared"
    start_from: StartFrom = "midtrained_checkpoint"
    max_len: int = 2048
    val_fraction: float = 0.05
    seed: int = 0


def _upstream_drops(items: Iterable[Kept | dict], drops: ShardWriter) -> Iterator[tuple]:
    """(conversation, split) pairs of the kept items; drop and quarantine rows to ``drops``."""
    for item in items:
        if isinstance(item, Kept):
            yield item.conversation, item.split
        else:
            drops.write_row(item)


@asset(
    group_name=SFT_GROUP,
    pool=GLOBAL_ASSETS_POOL,
    code_version=SFT_CODE_VERSION,
    deps=["midtrained_checkpoint", "base_model"],
    description="Conversations from the configured sources (quarantine, exact dedup, 13-gram "
    "decontamination against every evaluation set, held-out split), rendered in the one chat "
    "format with the start model's tokenizer: ids and the assistant-only loss mask.",
)
def sft_dataset(
    context: AssetExecutionContext, config: SFTDatasetConfig, storage: StorageResource
) -> MaterializeResult:
    store = storage.get()
    data_dir = shared_data_dir()
    sources = demo_sft_sources() if config.sources == "demo" else shared_sft_sources(data_dir)
    build = SFTBuildConfig(val_fraction=config.val_fraction, seed=config.seed)
    with tempfile.TemporaryDirectory() as tmp:
        weights, tokenizer, start = start_model(store, config.start_from, tmp)
        version_id = content_version(
            "sft_dataset",
            SFT_CODE_VERSION,
            config.model_dump(),
            [tokenizer_hash(tokenizer), *(s.model_dump_json() for s in sources)],
        )
        outcome: dict[str, Any] = {}

        def write(version) -> ShardManifest:  # noqa: ANN001
            index = build_index(data_dir, build.eval_sets, build.ngram, build.min_tokens)
            items, counts = stream_conversations(sources, index, build)
            drops = ShardWriter(store, version.path("source_drops"), DROP_SCHEMA)
            pairs = _upstream_drops(items, drops)
            sft_index, text, render_drops, stats = render_sft_dataset(
                store, version, pairs, tokenizer, config.max_len
            )
            outcome.update(stats=stats, counts=counts, index=sft_index)
            rows = _source_rows(counts, stats.rendered, stats.dropped)
            hist = length_histogram(stats.lengths)
            chart_rel = version.path("lengths.png")
            store.write_bytes(chart_rel, _length_chart(*hist))
            tok = load_tokenizer(tokenizer)
            return ShardManifest(
                asset="sft_dataset",
                partition=None,
                shards=text,
                drops=[*drops.close(), *render_drops],
                counts=_totals(rows),
                extra={
                    "start_from": config.start_from,
                    "start_model": start,
                    "start_weights": str(weights),
                    "sources": rows,
                    "tokens": dict(stats.tokens),
                    "trained_tokens": dict(stats.trained),
                    "length_histogram": {"edges": hist[0], "counts": hist[1]},
                    "lengths_chart": chart_rel,
                    "decontamination": index.summary(),
                    "samples": [marked_sample(tok, ids, mask) for ids, mask in stats.samples],
                },
            )

        manifest = build_version(store, "sft_dataset", None, version_id, write)
    extra = manifest.extra
    tokens, trained = extra["tokens"], extra["trained_tokens"]
    coverage = sum(trained.values()) / max(1, sum(tokens.values()))
    samples = "\n\n".join(f"```\n{s}\n```" for s in extra["samples"]) or "_none_"
    return MaterializeResult(
        metadata={
            "start_model": MetadataValue.text(extra["start_model"]),
            "per_source": MetadataValue.md(
                markdown_table([{"source": r["source"], **r} for r in extra["sources"]])
            ),
            "counts": MetadataValue.json(manifest.counts),
            "tokens": MetadataValue.json(tokens),
            "mask_coverage": MetadataValue.float(round(coverage, 4)),
            "decontamination": MetadataValue.json(extra["decontamination"]),
            "lengths": chart_metadata(context.instance, store, extra["lengths_chart"],
                                      "rendered lengths (tokens)"),  # fmt: skip
            "samples": MetadataValue.md("Trained spans between ⟦ and ⟧.\n\n" + samples),
            **version_metadata(manifest),
        }
    )


def _source_rows(
    counts: dict[str, Counter[str]], rendered: Counter[str], dropped: Counter[str]
) -> list[dict[str, Any]]:
    """Per source: what the sources stage did, and what rendering kept or dropped."""
    rows = []
    for source, c in sorted(counts.items()):
        render_drops = sum(v for k, v in dropped.items() if k.startswith(f"{source}/"))
        rows.append(
            {
                "source": source,
                **{k: int(v) for k, v in sorted(c.items())},
                "render_dropped": render_drops,
                "rendered_train": rendered[f"{source}/train"],
                "rendered_val": rendered[f"{source}/val"],
            }
        )
    return rows


def _totals(rows: list[dict[str, Any]]) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for row in rows:
        totals.update({k: v for k, v in row.items() if isinstance(v, int)})
    return dict(totals)


def _length_chart(edges: list[float], counts: list[int]) -> bytes:
    fig = figure(6, 3)
    ax = fig.subplots()
    if counts:
        ax.bar(edges[:-1], counts, width=[b - a for a, b in zip(edges, edges[1:], strict=False)],
               align="edge")  # fmt: skip
    ax.set_xlabel("rendered tokens per conversation")
    ax.set_ylabel("conversations")
    return png_bytes(fig)


@profiled("sft_checkpoint")
class SFTAssetConfig(Config):
    """Supervised fine-tuning of the model ``sft_dataset`` rendered for. Defaults: TRL's
    ``SFTConfig`` learning rate 2e-5; a linear decay after a 3% warmup as in Tulu 3 (which
    uses 5e-6 for 8B models; smaller models take larger rates). Packing is on; ``packing:
    false`` pads one conversation per row."""

    seq_len: int = 2047
    micro_batch_size: int = 4
    grad_accum_steps: int = 8
    max_steps: int = 1000
    lr: float = 2e-5
    warmup_steps: int = 30
    packing: bool = True
    load_optimizer: bool = False
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

    def train_config(self, data_dir: str, init_path: str) -> TrainConfig:
        fields = {
            "objective": "sft",
            "seq_len": self.seq_len,
            "micro_batch_size": self.micro_batch_size,
            "grad_accum_steps": self.grad_accum_steps,
            "max_steps": self.max_steps,
            "packing": self.packing,
            "checkpoint_every": self.checkpoint_every,
            "log_every": self.log_every,
            "cpu_threads": self.cpu_threads,
            "seed": self.seed,
            "optim": OptimConfig(
                lr=self.lr, warmup_steps=self.warmup_steps, min_lr_ratio=0.0, schedule="linear"
            ),
            "eval": EvalConfig(every=self.eval_every, batches=self.eval_batches, max_new_tokens=48),
            "init": InitConfig(path=init_path, load_optimizer=self.load_optimizer),
        }
        return asset_train_config(fields, self.config_path, data_dir, self.toxicity_prompts)


@asset(
    group_name=SFT_GROUP,
    pool=GLOBAL_ASSETS_POOL,
    deps=["sft_dataset"],
    op_tags={"llmstack/gpu": "true"},
    description="The start model fine-tuned on sft_dataset by the training engine: loss on "
    "assistant tokens only, normalized over the step's global count of them, packed "
    "conversations that never attend to each other; held-out loss and sample answers.",
)
def sft_checkpoint(
    context: AssetExecutionContext,
    config: SFTAssetConfig,
    storage: StorageResource,
    training: TrainingResource,
) -> MaterializeResult:
    store = storage.get()
    dataset = read_manifest(store, "sft_dataset", None)
    with tempfile.TemporaryDirectory() as tmp:
        weights, _, start = start_model(store, dataset.extra["start_from"], tmp)
        data_dir = store.local_path(dataset.folder) or store.download_dir(
            dataset.folder, str(Path(tmp) / "data")
        )
        run = run_training_asset(
            context,
            store,
            training,
            "sft_checkpoint",
            config.train_config(data_dir, str(weights)),
            fresh=config.fresh,
            work_dir=config.work_dir,
        )
    return MaterializeResult(
        metadata={
            **training_metadata(context, store, "sft_checkpoint", run),
            "start_model": MetadataValue.text(start),
            "data_version": MetadataValue.text(str(dataset.content_version)),
        }
    )
