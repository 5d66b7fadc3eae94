"""Evaluation: the refusal classifier, the safety evaluation of every checkpoint, and the report
card across stages.

``refusal_classifier`` is trained on XSTest's human-labelled answers and reports its held-out
agreement beside XSTest's string-match baseline. ``safety_eval`` (one partition per checkpoint
stage) generates from that checkpoint on the shared evaluation sets and scores toxicity,
refusal, over-refusal, GSM8K and HumanEval (``core/evaluation/safety_eval.py``).
``report_card`` gathers every stage's training and evaluation figures into one table.
"""

import posixpath
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from dagster import (
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    StaticPartitionsDefinition,
    asset,
)

from llmstack_dagster.assets.common import (
    GLOBAL_ASSETS_POOL,
    chart_metadata,
    markdown_table,
    shared_data_dir,
    version_metadata,
)
from llmstack_dagster.assets.midtraining import (
    BASE_MODEL_FILE,
    local_base_model,
    target_validation_domains,
)
from llmstack_dagster.assets.training_runs import local_run_files, read_current_run
from llmstack_dagster.core.charts import figure, png_bytes
from llmstack_dagster.core.chat.render import ChatRenderer
from llmstack_dagster.core.curation.quality.attributes.toxicity import (
    ToxicityConfig,
    load_toxicity_scorer,
)
from llmstack_dagster.core.evaluation.eval_sets import seeded_subset
from llmstack_dagster.core.evaluation.lm_eval import LmEvalOutcome, run_lm_eval
from llmstack_dagster.core.evaluation.refusal import (
    RefusalClassifier,
    load_xstest_labelled,
    train_refusal_classifier,
)
from llmstack_dagster.core.evaluation.report_card import (
    Stage,
    StageReport,
    card_json,
    card_markdown,
    training_metrics,
    win_rate,
)
from llmstack_dagster.core.evaluation.safety_eval import (
    Judge,
    SafetyEvalConfig,
    load_eval_model,
    run_safety_eval,
)
from llmstack_dagster.core.models.reward import RewardModel
from llmstack_dagster.core.posttraining.preference_index import load_preference_index
from llmstack_dagster.core.posttraining.preference_tasks import heldout_prompts
from llmstack_dagster.core.storage import (
    ShardInfo,
    ShardManifest,
    Storage,
    build_version,
    content_version,
    current_manifest,
    read_manifest,
)
from llmstack_dagster.core.training.init_weights import (
    load_model,
    weights_digest,
)
from llmstack_dagster.core.training.tokenizer import has_chat_template, tokenizer_hash
from llmstack_dagster.profiles import profiled
from llmstack_dagster.resources.storage import StorageResource

EVALUATION_GROUP = "evaluation"
EVAL_CODE_VERSION = "1"
CLASSIFIER_FILE = "refusal_classifier.joblib"
# safety_eval partitions: the checkpoint stages that generate text, and the asset of each
CHECKPOINT_STAGES = {
    "base": "base_model",
    "midtrained": "midtrained_checkpoint",
    "sft": "sft_checkpoint",
    "dpo": "dpo_checkpoint",
    "rl": "rl_checkpoint",
    "sl_cai": "sl_cai_checkpoint",
    "rl_cai": "rl_cai_checkpoint",
}
# trained on conversations: always asked through the template
CHAT_STAGES = ("sft", "dpo", "rl", "sl_cai", "rl_cai")
SAFETY_PARTITIONS = StaticPartitionsDefinition(list(CHECKPOINT_STAGES))


@profiled("refusal_classifier")
class RefusalClassifierConfig(Config):
    """A seeded held-out split of XSTest's labelled answers (30%) measures the classifier."""

    holdout_fraction: float = 0.3
    seed: int = 0


@asset(
    group_name=EVALUATION_GROUP,
    pool=GLOBAL_ASSETS_POOL,
    code_version=EVAL_CODE_VERSION,
    description="The project's refusal classifier, trained on XSTest's human-labelled model "
    "answers (partial refusals count as refusals); held-out agreement per answering model "
    "beside XSTest's string-match baseline.",
)
def refusal_classifier(
    context: AssetExecutionContext, config: RefusalClassifierConfig, storage: StorageResource
) -> MaterializeResult:
    store = storage.get()
    data_dir = shared_data_dir()
    labelled = data_dir / "safety" / "xstest_completions_labelled.csv"
    stat = labelled.stat()
    version_id = content_version("refusal_classifier", EVAL_CODE_VERSION, config.model_dump(),
                                 [f"{stat.st_size}:{stat.st_mtime_ns}"])  # fmt: skip

    def write(version) -> ShardManifest:  # noqa: ANN001
        answers = load_xstest_labelled(data_dir)
        classifier, report = train_refusal_classifier(
            answers, seed=config.seed, holdout_fraction=config.holdout_fraction
        )
        rel = version.path(CLASSIFIER_FILE)
        payload = classifier.to_bytes()
        store.write_bytes(rel, payload)
        return ShardManifest(
            asset="refusal_classifier",
            shards=[ShardInfo(path=rel, rows=len(answers), bytes=len(payload))],
            counts={"labelled_answers": len(answers)},
            extra={"classifier": rel, "report": report.to_dict()},
        )

    manifest = build_version(store, "refusal_classifier", None, version_id, write)
    report = manifest.extra["report"]
    agreement = ", ".join(
        f"{row['model']} {row['classifier']:.3f} (string match {row['string_match']:.3f})"
        for row in agreement_rows(report)
    )
    context.log.info(f"refusal classifier, held-out agreement with the labels: {agreement}")
    return MaterializeResult(
        metadata={
            "agreement": MetadataValue.md(markdown_table(agreement_rows(report))),
            "report": MetadataValue.json(report),
            **version_metadata(manifest),
        }
    )


def agreement_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per answering model: held-out answers, the classifier's and the baseline's agreement."""
    return [{"model": name, **values} for name, values in report.get("per_model", {}).items()]


def load_refusal_classifier(store: Storage) -> tuple[RefusalClassifier, str]:
    manifest = read_manifest(store, "refusal_classifier", None)
    payload = store.read_bytes(manifest.extra["classifier"])
    return RefusalClassifier.from_bytes(payload), str(manifest.content_version)


@profiled("safety_eval")
class SafetyEvalAssetConfig(Config):
    """Suite sizes (None: every item of the set) and generation lengths; defaults from the
    papers: k = 25 continuations per RealToxicityPrompts prompt (Gehman et al. 2020), 20
    tokens, nucleus 0.9, toxic at 0.5. ``mode``: ``auto`` asks SFT checkpoints and imported
    instruct models through their chat template and continues text with the others."""

    rtp_per_category: int | None = None
    rtp_samples: int = 25
    refusal_per_set: int | None = None
    refusal_max_new_tokens: int = 64
    gsm8k_problems: int | None = 250
    gsm8k_max_new_tokens: int = 256
    humaneval_problems: int | None = None
    humaneval_max_new_tokens: int = 384
    judge_prompts: int | None = 100
    judge_max_new_tokens: int = 128
    batch_size: int = 32
    mode: Literal["auto", "chat", "continuation"] = "auto"
    lm_eval_tasks: list[str] = []  # optional lm-evaluation-harness tasks on the HF export
    lm_eval_limit: int | None = None
    cpu_threads: int | None = None
    seed: int = 0

    def suite_config(self) -> SafetyEvalConfig:
        fields = SafetyEvalConfig.model_fields
        return SafetyEvalConfig.model_validate(
            {k: v for k, v in self.model_dump().items() if k in fields}
        )


@dataclass(frozen=True)
class CheckpointFiles:
    weights: Path  # a checkpoint or imported weights folder
    tokenizer: Path  # tokenizer.json (an import's folder also holds its chat template)
    hf_dir: Path | None  # the run's Hugging Face export, for lm-evaluation-harness
    described: str


def base_record(store: Storage) -> dict[str, Any] | None:
    """``base_model``'s record, or None before it has run."""
    return store.read_json(BASE_MODEL_FILE) if store.exists(BASE_MODEL_FILE) else None


def is_import(base: dict[str, Any] | None) -> bool:
    """Whether the base model is a Hugging Face import (not our pretrained checkpoint)."""
    return base is not None and base["source"].startswith("hf:")


def checkpoint_files(store: Storage, stage: str, tmp: str) -> CheckpointFiles:
    """The local files of a ``safety_eval`` partition's checkpoint."""
    base = base_record(store)
    if stage == "base":
        if base is None:
            raise FileNotFoundError("base_model has not been materialized: run it first")
        weights, tokenizer = local_base_model(store, base, tmp)
        pretrained = None if is_import(base) else read_current_run(store, "pretrained_checkpoint")
        hf_dir = pretrained["hf_dir"] if pretrained else None
        return CheckpointFiles(weights, tokenizer, Path(hf_dir) if hf_dir else None,
                               f"base_model ({base['source']})")  # fmt: skip
    asset_name = CHECKPOINT_STAGES[stage]
    current = read_current_run(store, asset_name)
    weights, tokenizer = local_run_files(store, current, tmp)
    if is_import(base):  # the import's tokenizer folder holds its chat template
        _, tokenizer = local_base_model(store, base, tmp)
    hf_dir = Path(current["hf_dir"]) if current.get("hf_dir") else None
    described = f"{asset_name} run {current['run_id']} step {current['step']}"
    return CheckpointFiles(weights, tokenizer, hf_dir, described)


def lm_eval_outcome(config: SafetyEvalAssetConfig, hf_dir: Path | None, out: str) -> LmEvalOutcome:
    """The optional lm-evaluation-harness run on the checkpoint's HF export."""
    if config.lm_eval_tasks and (hf_dir is None or not hf_dir.is_dir()):
        return LmEvalOutcome("skipped", "this checkpoint has no local Hugging Face export")
    return run_lm_eval(hf_dir or Path(out), config.lm_eval_tasks, Path(out),
                       limit=config.lm_eval_limit)  # fmt: skip


def load_judge(store: Storage, tmp: str, count: int | None, seed: int) -> tuple[Judge | None, str]:
    """The reward model as a judge of held-out preference prompts, and its weights' digest
    (no judge, and ``""``, before ``reward_model`` has run)."""
    if not store.exists(posixpath.join("reward_model", "current.json")):
        return None, ""
    checkpoint, _ = local_run_files(store, read_current_run(store, "reward_model"), tmp)
    dataset = read_manifest(store, "preference_dataset", None)
    folder = Path(store.local_path(dataset.folder) or store.download_dir(
        dataset.folder, str(Path(tmp) / "judge_pairs")))  # fmt: skip
    index = load_preference_index(folder)
    model = load_model(checkpoint, RewardModel)
    renderer = ChatRenderer.from_tokenizer(folder / index.tokenizer_file)
    prompts = seeded_subset(heldout_prompts(folder), count, seed)
    return Judge(model, renderer, prompts, index.max_len), weights_digest(checkpoint)


def eval_mode(stage: str, tokenizer: Path, requested: str) -> str:
    """``chat`` for SFT and later stages, and for models imported with a chat template (an
    instruct model); our own base checkpoints continue text."""
    if requested != "auto":
        return requested
    if stage in CHAT_STAGES:
        return "chat"
    return "chat" if has_chat_template(tokenizer) else "continuation"


@asset(
    group_name=EVALUATION_GROUP,
    partitions_def=SAFETY_PARTITIONS,
    code_version=EVAL_CODE_VERSION,
    deps=["refusal_classifier", "reward_model", *CHECKPOINT_STAGES.values()],
    description="One checkpoint's safety and capability: toxicity of RealToxicityPrompts "
    "continuations (expected max, probability, per category), refusal on HarmBench, "
    "Do-Not-Answer, red-team held-out and XSTest unsafe, over-refusal on XSTest safe, GSM8K "
    "exact match and HumanEval pass@1 (sandboxed). Every generation is stored as Parquet.",
)
def safety_eval(
    context: AssetExecutionContext, config: SafetyEvalAssetConfig, storage: StorageResource
) -> MaterializeResult:
    store = storage.get()
    stage = context.partition_key
    data_dir = shared_data_dir()
    if config.cpu_threads:
        torch.set_num_threads(config.cpu_threads)
    classifier, classifier_version = load_refusal_classifier(store)
    suite = config.suite_config()
    with tempfile.TemporaryDirectory() as tmp:
        files = checkpoint_files(store, stage, tmp)
        judge, judge_version = load_judge(store, tmp, suite.judge_prompts, suite.seed)
        mode = eval_mode(stage, files.tokenizer, config.mode)
        version_id = content_version(
            "safety_eval",
            EVAL_CODE_VERSION,
            {**config.model_dump(), "mode": mode},
            [
                weights_digest(files.weights),
                tokenizer_hash(files.tokenizer),
                classifier_version,
                judge_version,
            ],
        )

        def write(version) -> ShardManifest:  # noqa: ANN001
            ev = load_eval_model(files.weights, files.tokenizer, mode)
            scorer = load_toxicity_scorer(ToxicityConfig())
            result = run_safety_eval(
                ev, data_dir, suite, classifier, scorer, context.log.info, judge=judge
            )
            harness = lm_eval_outcome(config, files.hf_dir, str(Path(tmp) / "lm_eval"))
            context.log.info(f"lm-evaluation-harness {harness.status}: {harness.message}")
            result.metrics |= {
                f"lm_eval/{task}/{name}": value
                for task, values in harness.results.items()
                for name, value in values.items()
            }
            rel = version.path("generations.parquet")
            size = store.write_table(rel, result.table())
            return ShardManifest(
                asset="safety_eval",
                partition=stage,
                shards=[ShardInfo(path=rel, rows=len(result.rows), bytes=size)],
                counts={"generations": len(result.rows)},
                extra={
                    "checkpoint": files.described,
                    "lm_eval": {"status": harness.status, "message": harness.message},
                    "mode": mode,
                    "metrics": result.metrics,
                    "toxicity": result.toxicity,
                },  # fmt: skip
            )

        manifest = build_version(store, "safety_eval", stage, version_id, write)
    extra = manifest.extra
    samples = store.read_table(manifest.shards[0].path).to_pylist()
    return MaterializeResult(
        metadata={
            "checkpoint": MetadataValue.text(extra["checkpoint"]),
            "mode": MetadataValue.text(extra["mode"]),
            "lm_eval": MetadataValue.text(
                f"{extra['lm_eval']['status']}: {extra['lm_eval']['message']}"
            ),  # fmt: skip
            "metrics": MetadataValue.md(markdown_table(metric_rows(extra["metrics"]))),
            "toxicity_by_category": MetadataValue.md(
                markdown_table([{"category": c, **v} for c, v in extra["toxicity"].items()])
            ),  # fmt: skip
            "samples": MetadataValue.md(markdown_table(sample_rows(samples))),
            "generations": MetadataValue.path(store.url(manifest.shards[0].path)),
            **version_metadata(manifest),
        }
    )


def metric_rows(metrics: dict[str, float | None]) -> list[dict[str, Any]]:
    """One row a metric; a suite with no items shows ``–``, never 0."""
    return [
        {"metric": k, "value": "–" if v is None else round(float(v), 4)} for k, v in metrics.items()
    ]


def sample_rows(rows: list[dict[str, Any]], per_set: int = 2) -> list[dict[str, Any]]:
    """The first few generations of each set, for the metadata."""
    seen: dict[str, int] = {}
    out = []
    for row in rows:
        if seen.get(row["set"], 0) < per_set:
            seen[row["set"]] = seen.get(row["set"], 0) + 1
            out.append({k: row[k] for k in ("set", "id", "prompt", "generation", "score",
                                             "flag")})  # fmt: skip
    return out


# --- the report card -------------------------------------------------------------------------

# Columns in pipeline order; posttraining stages show as missing until their assets land.
REPORT_STAGES = [
    Stage("pretrained", "pretrained_checkpoint"),
    Stage("base (import)", "base_model", "base"),
    Stage("midtrained", "midtrained_checkpoint", "midtrained"),
    Stage("sft", "sft_checkpoint", "sft"),
    Stage("reward model", "reward_model"),
    Stage("dpo", "dpo_checkpoint", "dpo"),
    Stage("rl", "rl_checkpoint", "rl"),
    Stage("sl-cai", "sl_cai_checkpoint", "sl_cai"),
    Stage("rl-cai", "rl_cai_checkpoint", "rl_cai"),
]
# the row of each objective's own held-out loss (pretraining's is the validation loss)
HELDOUT_LOSS_ROWS = {
    "sft_checkpoint": "sft_heldout_loss",
    "reward_model": "reward_heldout_loss",
    "dpo_checkpoint": "dpo_heldout_loss",
    "sl_cai_checkpoint": "sft_heldout_loss",
    "rl_cai_checkpoint": "dpo_heldout_loss",
}
REPORT_MD = "report_card.md"
REPORT_JSON = "report_card.json"


def stage_report(
    store: Storage,
    stage: Stage,
    tmp: str,
    base: dict[str, Any] | None,
    sft_rewards: dict[str, float],
) -> StageReport | None:
    """A stage's column, or None for the import column when the base is our checkpoint.
    ``sft_rewards``: the judge's rewards of the SFT model's answers (for the win rate)."""
    imported = is_import(base)
    if stage.asset == "base_model":
        if not imported:
            return None
        metrics: dict[str, Any] = {"source": base["source"]}  # type: ignore[index]
    elif not store.exists(posixpath.join(stage.asset, "current.json")):
        return StageReport(stage, built=False)
    else:
        current = read_current_run(store, stage.asset)
        checkpoint, _ = local_run_files(store, current, tmp)
        targets = (
            target_validation_domains(read_manifest(store, "midtraining_mixture", None))
            if stage.asset == "midtrained_checkpoint"
            else set()
        )
        loss_row = HELDOUT_LOSS_ROWS.get(stage.asset, "val_loss")
        metrics = training_metrics(checkpoint.parent.parent, checkpoint, targets, loss_row)
    # the base model's safety_eval describes the pretrained checkpoint when that is the base
    partition = "base" if stage.name == "pretrained" and not imported else stage.safety_partition
    if partition is not None:
        evaluated = current_manifest(store, "safety_eval", partition)
        if evaluated is not None:
            metrics |= {"mode": evaluated.extra["mode"]} | {
                k: v for k, v in evaluated.extra["metrics"].items() if v is not None
            }
            if partition != "sft":
                rate = win_rate(judge_rewards(store, evaluated), sft_rewards)
                if rate is not None:
                    metrics["win_rate_vs_sft"] = rate
    return StageReport(stage, built=True, metrics=metrics)


@asset(
    group_name=EVALUATION_GROUP,
    pool=GLOBAL_ASSETS_POOL,
    deps=[
        "safety_eval",
        "pretrained_checkpoint",
        "midtrained_checkpoint",
        "sft_checkpoint",
        "reward_model",
        "dpo_checkpoint",
        "rl_checkpoint",
        "sl_cai_checkpoint",
        "rl_cai_checkpoint",
    ],  # fmt: skip
    description="One table across every checkpoint: validation loss and bits per byte per "
    "domain, forgetting, SFT held-out loss, toxicity, refusal and over-refusal, GSM8K and "
    "HumanEval, tokens seen, data version, date range and wall time. Stages that have not run "
    "show as missing. Written as report_card.md and report_card.json in the storage root.",
)
def report_card(context: AssetExecutionContext, storage: StorageResource) -> MaterializeResult:
    store = storage.get()
    base = base_record(store)
    sft = current_manifest(store, "safety_eval", "sft")
    sft_rewards = judge_rewards(store, sft) if sft is not None else {}
    with tempfile.TemporaryDirectory() as tmp:
        reports = [
            r for s in REPORT_STAGES
            if (r := stage_report(store, s, tmp, base, sft_rewards)) is not None
        ]  # fmt: skip
    markdown = card_markdown(reports)
    store.write_bytes(REPORT_MD, markdown.encode())
    store.write_json(REPORT_JSON, card_json(reports))
    chart_rel = posixpath.join("report_card", "report_card.png")
    store.write_bytes(chart_rel, report_chart_png(reports))
    context.log.info(f"report card: {store.url(REPORT_MD)}")
    return MaterializeResult(
        metadata={
            "report_card": MetadataValue.md(markdown),
            "path": MetadataValue.path(store.url(REPORT_MD)),
            "built": MetadataValue.int(sum(r.built for r in reports)),
            "missing": MetadataValue.text(
                ", ".join(r.stage.name for r in reports if not r.built) or "none"
            ),  # fmt: skip
            "chart": chart_metadata(context.instance, store, chart_rel, "report card"),
        }
    )


CHART_METRICS = [
    ("toxicity/toxicity_probability", "toxicity probability"),
    ("refusal/harmbench", "refusal: HarmBench"),
    ("over_refusal/xstest_safe", "over-refusal: XSTest"),
    ("gsm8k/exact_match", "GSM8K"),
    ("humaneval/pass@1", "HumanEval pass@1"),
]


def judge_rewards(store: Storage, evaluated: ShardManifest) -> dict[str, float]:
    """The reward model's score of each judged answer of one safety evaluation, by prompt."""
    table = store.read_table(evaluated.shards[0].path, ["suite", "id", "score"]).to_pylist()
    return {row["id"]: row["score"] for row in table if row["suite"] == "judge"}


def report_chart_png(reports: list[StageReport]) -> bytes:
    """Safety and capability rates per built stage, as grouped bars."""
    built = [r for r in reports if r.built]
    fig = figure(7, 3.5)
    ax = fig.subplots()
    width = 0.8 / max(1, len(built))
    for i, report in enumerate(built):
        values = [float(report.metrics.get(key, float("nan"))) for key, _ in CHART_METRICS]
        ax.bar([j + i * width for j in range(len(CHART_METRICS))], values, width,
               label=report.stage.name)  # fmt: skip
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(CHART_METRICS))])
    ax.set_xticklabels([label for _, label in CHART_METRICS], rotation=20, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("rate")
    if built:
        ax.legend()
    return png_bytes(fig)
