"""Posttraining, part 3: constitutional AI (Bai et al. 2022) and safety training.

``constitution`` loads, validates and hashes the principles (editing the project's file changes
the asset's code version, so Dagster marks it and everything below it stale).
``cai_revisions`` answers red-team prompts and runs rounds of critique and revision;
``sl_cai_checkpoint`` fine-tunes the SFT model on (prompt, final revision) mixed with
borderline-helpful and helpful conversations. ``ai_preferences`` samples two replies of the
SL-CAI model per prompt and labels them with a feedback model's multiple-choice probabilities;
``rl_cai_checkpoint`` trains the SL-CAI model with DPO on those soft labels.

Each model role (generator, critic, reviser, feedback model) is a spec string:
``checkpoint:<stage>`` (a ``safety_eval`` stage: ``sft``, ``dpo``, ``sl_cai``, ...),
``hf:<folder | .gguf file | smollm2>`` or ``endpoint:<OpenAI-compatible API base>#<model>``.
"""

import posixpath
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from dagster import (
    AssetExecutionContext,
    Config,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    asset,
)

from llmstack_dagster.assets.common import (
    GLOBAL_ASSETS_POOL,
    markdown_table,
    shared_data_dir,
    version_metadata,
)
from llmstack_dagster.assets.evaluation import CHECKPOINT_STAGES, checkpoint_files
from llmstack_dagster.assets.midtraining import hf_source, import_key
from llmstack_dagster.assets.online_rl import RLAssetConfig, run_grpo
from llmstack_dagster.assets.posttraining import (
    DPOAssetConfig,
    RewardModelAssetConfig,
    local_folder,
    sft_model,
)
from llmstack_dagster.assets.sft import SFTAssetConfig
from llmstack_dagster.assets.training_runs import (
    TOXICITY_TRACKING_PROMPTS,
    TrainedRun,
    local_run_files,
    run_training_asset,
    training_metadata,
)
from llmstack_dagster.core.chat.conversation import (
    CONVERSATION_SCHEMA,
    Conversation,
    Turn,
    conversations_from_table,
)
from llmstack_dagster.core.chat.decontamination import DecontaminationIndex, build_index
from llmstack_dagster.core.chat.sft_index import load_sft_index
from llmstack_dagster.core.chat.sft_render import render_sft_dataset
from llmstack_dagster.core.evaluation.safety_eval import load_eval_model
from llmstack_dagster.core.posttraining.cai_chains import (
    CHAIN_SCHEMA,
    RedTeamPrompt,
    RevisionConfig,
    run_chains,
)
from llmstack_dagster.core.posttraining.cai_data import (
    BORDERLINE_FILE,
    LabelledPair,
    load_borderline,
    red_team_train_prompts,
    sl_cai_conversations,
    split_conversations,
    write_labelled_pairs,
)
from llmstack_dagster.core.posttraining.chat_models import (
    ChatModel,
    EndpointChatModel,
    LocalChatModel,
    parse_model_spec,
)
from llmstack_dagster.core.posttraining.constitution import (
    DEFAULT_CONSTITUTION,
    Constitution,
    constitution_hash,
    load_constitution,
)
from llmstack_dagster.core.posttraining.feedback import (
    FeedbackConfig,
    FeedbackItem,
    ai_feedback,
    position_bias,
)
from llmstack_dagster.core.posttraining.preference_build import PreferenceBuildConfig
from llmstack_dagster.core.posttraining.preference_index import load_preference_index
from llmstack_dagster.core.posttraining.preference_losses import PreferenceLoss
from llmstack_dagster.core.posttraining.preference_sources import PreferencePair
from llmstack_dagster.core.posttraining.reference import reference_key, write_reference_cache
from llmstack_dagster.core.schema import DROP_SCHEMA, make_drop
from llmstack_dagster.core.storage import (
    ShardInfo,
    ShardManifest,
    ShardWriter,
    Storage,
    build_version,
    content_version,
    read_manifest,
)
from llmstack_dagster.core.training.distributed import pick_device
from llmstack_dagster.core.training.hf_import import import_hf
from llmstack_dagster.core.training.init_weights import load_model, weights_digest
from llmstack_dagster.core.training.tokenizer import TOKENIZER_FILE, tokenizer_hash
from llmstack_dagster.profiles import profiled
from llmstack_dagster.resources.storage import StorageResource
from llmstack_dagster.resources.training import TrainingResource

CAI_GROUP = "constitutional_ai"
CAI_CODE_VERSION = "1"
# the project's constitution is part of the code: editing it makes the asset stale
CONSTITUTION_CODE_VERSION = f"{CAI_CODE_VERSION}-{constitution_hash(load_constitution())[:12]}"
CONSTITUTION_FILE = "constitution.json"
SAMPLE_ROWS = 4
ConfigT = TypeVar("ConfigT", bound=Config)
FEEDBACK_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("prompt", pa.string()),
        pa.field("first", pa.string()),
        pa.field("second", pa.string()),
        pa.field("swapped", pa.bool_()),
        pa.field("principle_ids", pa.list_(pa.string())),
        pa.field("p_a", pa.list_(pa.float64())),
        pa.field("p_first", pa.float64()),
    ]
)


@profiled("constitution")
class ConstitutionConfig(Config):
    """``path``: a constitution YAML file; empty: the project's own
    (``llmstack_dagster/constitution/constitution.yaml``)."""

    path: str = ""


@asset(
    group_name=CAI_GROUP,
    pool=GLOBAL_ASSETS_POOL,
    code_version=CONSTITUTION_CODE_VERSION,
    description="The constitution: critique/revision principle pairs for the supervised phase, "
    "comparison principles for AI feedback, few-shot examples; validated, hashed, stored.",
)
def constitution(
    context: AssetExecutionContext, config: ConstitutionConfig, storage: StorageResource
) -> MaterializeResult:
    store = storage.get()
    path = Path(config.path) if config.path else DEFAULT_CONSTITUTION
    loaded = load_constitution(path)
    digest = constitution_hash(loaded)
    version_id = content_version("constitution", CAI_CODE_VERSION, {}, [digest])

    def write(version) -> ShardManifest:  # noqa: ANN001
        rel = version.path(CONSTITUTION_FILE)
        payload = loaded.model_dump_json(indent=2).encode()
        store.write_bytes(rel, payload)
        counts = {
            "critique_revision": len(loaded.critique_revision),
            "comparison": len(loaded.comparison),
        }
        return ShardManifest(
            asset="constitution",
            counts=counts,
            shards=[ShardInfo(path=rel, rows=sum(counts.values()), bytes=len(payload))],
            extra={"hash": digest, "source": str(path)},
        )

    manifest = build_version(store, "constitution", None, version_id, write)
    principles = [
        {"phase": "critique/revision", "id": p.id, "text": p.critique}
        for p in loaded.critique_revision
    ]
    principles += [{"phase": "comparison", "id": p.id, "text": p.text} for p in loaded.comparison]
    return MaterializeResult(
        data_version=DataVersion(digest),
        metadata={
            "hash": MetadataValue.text(digest),
            "source": MetadataValue.path(str(path)),
            "counts": MetadataValue.json(manifest.counts),
            "principles": MetadataValue.md(markdown_table(principles)),
            **version_metadata(manifest),
        },
    )


def stored_constitution(store: Storage) -> tuple[Constitution, str]:
    """The materialized constitution and its hash."""
    manifest = read_manifest(store, "constitution", None)
    payload = store.read_bytes(manifest.shards[0].path)
    return Constitution.model_validate_json(payload), manifest.extra["hash"]


class ChatModels:
    """The models of one asset run, loaded once per spec: (model, identity) where the
    identity (weights digest, or endpoint and model name) enters the content version."""

    def __init__(
        self, store: Storage, tmp: str, key_env: str, timeout_s: float, batch: int
    ) -> None:
        self.store, self.tmp, self.key_env, self.timeout_s = store, tmp, key_env, timeout_s
        self.batch = batch
        self.loaded: dict[str, tuple[ChatModel, str]] = {}

    def get(self, spec_text: str) -> tuple[ChatModel, str]:
        if spec_text not in self.loaded:
            self.loaded[spec_text] = self._load(spec_text)
        return self.loaded[spec_text]

    def _load(self, spec_text: str) -> tuple[ChatModel, str]:
        spec = parse_model_spec(spec_text)
        if spec.kind == "endpoint":
            model = EndpointChatModel(spec.target, spec.model, self.key_env, self.timeout_s)
            return model, f"{spec.target}#{spec.model}"
        if spec.kind == "checkpoint":
            if spec.target not in ("base", *CHECKPOINT_STAGES):
                known = ", ".join(("base", *CHECKPOINT_STAGES))
                raise ValueError(
                    f"model {spec_text!r}: no checkpoint stage {spec.target!r} (one of {known})"
                )
            files = checkpoint_files(self.store, spec.target, self.tmp)
            weights, tokenizer, described = files.weights, files.tokenizer, files.described
        else:
            folder, gguf = hf_source(spec.target)
            rel = posixpath.join("cai_models", import_key(folder, gguf))
            weights = Path(self.store.local_path(rel) or Path(self.tmp) / rel)
            if not (weights / TOKENIZER_FILE).is_file():
                import_hf(folder, weights, gguf)
            tokenizer, described = weights / TOKENIZER_FILE, f"hf {spec.target}"
        ev = load_eval_model(weights, tokenizer, "chat")
        return LocalChatModel(ev, described, self.batch), weights_digest(weights)


def _as(cls: type[ConfigT], config: Config) -> ConfigT:
    """Another asset's config class holding this config's values for its fields (the CAI
    stages train as SFT and DPO do; profiled config classes share no base)."""
    values = config.model_dump()
    return cls(**{k: values[k] for k in cls.model_fields if k in values})


def _sample_rows(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> str:
    return markdown_table([{k: r[k] for k in keys} for r in rows[:SAMPLE_ROWS]], max_cell=160)


@profiled("cai_revisions")
class CAIRevisionsConfig(Config):
    """``prompts`` red-team prompts (train side of the split; None: all 1,160 distinct ones),
    ``rounds`` of critique and revision (the paper: up to 4), each model a spec (see the
    module docstring); the endpoint's key is read from ``endpoint_key_env``."""

    prompts: int | None = 512
    rounds: int = 2
    few_shot: bool = True
    max_new_tokens: int = 256
    temperature: float = 0.0
    generator: str = "checkpoint:sft"
    critic: str = "checkpoint:sft"
    reviser: str = "checkpoint:sft"
    endpoint_key_env: str = "OPENAI_API_KEY"
    endpoint_timeout_s: float = 60.0
    batch_size: int = 16
    cpu_threads: int | None = None
    seed: int = 0


@asset(
    group_name=CAI_GROUP,
    pool=GLOBAL_ASSETS_POOL,
    code_version=CAI_CODE_VERSION,
    deps=["constitution", "sft_checkpoint"],
    description="Red-team prompts (HH-RLHF harmless first turns, train side) answered, then "
    "critiqued and revised for N rounds under seeded constitution principles; every chain as "
    "Parquet, empty or looping generations quarantined with the step, contaminated prompts "
    "dropped.",
)
def cai_revisions(
    context: AssetExecutionContext, config: CAIRevisionsConfig, storage: StorageResource
) -> MaterializeResult:
    store = storage.get()
    data_dir = shared_data_dir()
    if config.cpu_threads:
        torch.set_num_threads(config.cpu_threads)
    loaded, digest = stored_constitution(store)
    cfg = RevisionConfig(
        rounds=config.rounds,
        few_shot=config.few_shot,
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        seed=config.seed,
    )
    prompts = red_team_train_prompts(data_dir, config.prompts, config.seed)
    with tempfile.TemporaryDirectory() as tmp:
        models = ChatModels(
            store, tmp, config.endpoint_key_env, config.endpoint_timeout_s, config.batch_size
        )
        roles = {r: models.get(getattr(config, r)) for r in ("generator", "critic", "reviser")}
        version_id = content_version(
            "cai_revisions",
            CAI_CODE_VERSION,
            config.model_dump(),
            [digest, *(identity for _, identity in roles.values())],
        )

        def write(version) -> ShardManifest:  # noqa: ANN001
            drops = ShardWriter(store, version.path("drops"), DROP_SCHEMA)
            clean = _decontaminated(prompts, build_index(data_dir), drops)
            context.log.info(f"cai_revisions: {len(clean)} prompts, {cfg.rounds} rounds")
            outcome = run_chains(clean, loaded, cfg, *(roles[r][0] for r in roles))
            chains = ShardWriter(store, version.path("chains"), CHAIN_SCHEMA)
            for row in outcome.chains:
                chains.write_row(row)
            for row in outcome.drops:
                drops.write_row(row)
            reasons = Counter(d["reason"] for d in outcome.drops)
            counts = {
                "in": len(prompts),
                "kept": len(outcome.chains),
                "contaminated": len(prompts) - len(clean),
                "quarantined": len(outcome.drops),
            }
            counts["dropped"] = counts["contaminated"] + counts["quarantined"]
            samples = [
                {
                    "id": c["id"],
                    "prompt": c["prompt"],
                    "initial": c["initial"],
                    "principles": ", ".join(r["principle_id"] for r in c["rounds"]),
                    "final": c["final"],
                }
                for c in outcome.chains[:SAMPLE_ROWS]
            ]
            return ShardManifest(
                asset="cai_revisions",
                shards=chains.close(),
                drops=drops.close(),
                counts=counts,
                extra={
                    "reasons": dict(reasons),
                    "samples": samples,
                    "constitution": digest,
                    "models": {r: roles[r][0].description for r in roles},
                },
            )

        manifest = build_version(store, "cai_revisions", None, version_id, write)
    extra = manifest.extra
    return MaterializeResult(
        metadata={
            "counts": MetadataValue.json(manifest.counts),
            "quarantine_reasons": MetadataValue.json(extra["reasons"]),
            "models": MetadataValue.json(extra["models"]),
            "samples": MetadataValue.md(markdown_table(extra["samples"], max_cell=160)),
            "constitution": MetadataValue.text(extra["constitution"]),
            **version_metadata(manifest),
        }
    )


def _decontaminated(
    prompts: list[RedTeamPrompt], index: DecontaminationIndex, drops: ShardWriter
) -> list[RedTeamPrompt]:
    """The prompts that share no n-gram with an evaluation set; the others as drop rows."""
    kept = []
    for prompt in prompts:
        hit = index.find(prompt.text)
        if hit is None:
            kept.append(prompt)
            continue
        drops.write_row(
            make_drop(
                stage="cai_revisions",
                domain="cai",
                reason=f"contaminated:{hit.eval_set}",
                source=prompt.source,
                id=prompt.id,
                detail=f"shares {hit.ngram!r}",
                sample=prompt.text,
            )
        )
    return kept


@profiled("sl_cai_checkpoint")
class SLCAIAssetConfig(Config):
    """SFT of the SFT model on (prompt, final revision), the borderline-helpful examples and
    helpful SFT conversations making ``helpful_share`` of the mix. Training settings as
    ``sft_checkpoint`` (TRL's SFT learning rate 2e-5, linear decay)."""

    helpful_share: float = 0.5
    val_fraction: float = 0.05
    max_len: int = 2048
    seq_len: int = 2047
    micro_batch_size: int = 4
    grad_accum_steps: int = 8
    max_steps: int = 200
    lr: float = 2e-5
    warmup_steps: int = 10
    packing: bool = True
    eval_every: int = 50
    eval_batches: int = 8
    toxicity_prompts: int = TOXICITY_TRACKING_PROMPTS
    checkpoint_every: int = 50
    log_every: int = 10
    cpu_threads: int | None = None
    seed: int = 1337
    fresh: bool = False
    config_path: str = ""
    work_dir: str = ""


def helpful_conversations(store: Storage, data_dir: Path) -> list[Conversation]:
    """The training side of ``sft_dataset``'s conversations."""
    train_ids = set()
    for shard in load_sft_index(data_dir).split_shards("train"):
        train_ids |= set(
            pq.read_table(data_dir / shard.path, columns=["id"]).column("id").to_pylist()
        )
    manifest = read_manifest(store, "sft_dataset", None)
    tables = [store.read_table(s.path) for s in manifest.shards]
    table = pa.concat_tables(tables) if tables else CONVERSATION_SCHEMA.empty_table()
    return [c for c in conversations_from_table(table) if c.id in train_ids]


@asset(
    group_name=CAI_GROUP,
    pool=GLOBAL_ASSETS_POOL,
    deps=["cai_revisions", "sft_checkpoint", "sft_dataset"],
    op_tags={"llmstack/gpu": "true"},
    description="The SFT model fine-tuned on (red-team prompt, final revision), borderline-"
    "helpful examples (safe requests that look harmful) and helpful SFT conversations at a "
    "configurable share: the supervised phase of constitutional AI.",
)
def sl_cai_checkpoint(
    context: AssetExecutionContext,
    config: SLCAIAssetConfig,
    storage: StorageResource,
    training: TrainingResource,
) -> MaterializeResult:
    store = storage.get()
    revisions = read_manifest(store, "cai_revisions", None)
    borderline = load_borderline()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, tokenizer, start = sft_model(store, tmp)
        sft_dir = local_folder(store, read_manifest(store, "sft_dataset", None), tmp, "sft")
        mix = {k: getattr(config, k) for k in ("helpful_share", "val_fraction", "max_len", "seed")}
        version_id = content_version(
            "sl_cai_data",
            CAI_CODE_VERSION,
            mix,
            [
                str(revisions.content_version),
                tokenizer_hash(tokenizer),
                str(load_sft_index(sft_dir).data_version),
                BORDERLINE_FILE.read_text(),
            ],
        )

        def write(version) -> ShardManifest:  # noqa: ANN001
            chains = pa.concat_tables(
                [store.read_table(s.path) for s in revisions.shards] or [CHAIN_SCHEMA.empty_table()]
            ).to_pylist()
            helpful = helpful_conversations(store, sft_dir)
            mixed = sl_cai_conversations(
                chains, borderline, helpful, config.helpful_share, config.seed
            )
            _, text, drops, stats = render_sft_dataset(
                store,
                version,
                split_conversations(mixed, config.val_fraction, config.seed),
                tokenizer,
                config.max_len,
            )
            sources = Counter(c.source for c in mixed)
            return ShardManifest(
                asset="sl_cai_data",
                shards=text,
                drops=drops,
                counts={"in": len(mixed), **sources},
                extra={"rendered": dict(stats.rendered)},
            )

        data = build_version(store, "sl_cai_data", None, version_id, write)
        data_dir = local_folder(store, data, tmp, "sl_cai_data")
        train_config = _as(SFTAssetConfig, config).train_config(str(data_dir), str(checkpoint))
        run = run_training_asset(
            context,
            store,
            training,
            "sl_cai_checkpoint",
            train_config,
            fresh=config.fresh,
            work_dir=config.work_dir,
        )
    return MaterializeResult(
        metadata={
            **training_metadata(context, store, "sl_cai_checkpoint", run),
            "start_model": MetadataValue.text(start),
            "mix": MetadataValue.json(data.counts),
            "data_version": MetadataValue.text(str(data.content_version)),
        }
    )


@profiled("ai_preferences")
class AIPreferencesConfig(Config):
    """Two replies of the SL-CAI model (temperature 1, nucleus 0.95) to each of ``prompts``
    red-team prompts, labelled by ``feedback_model`` under ``principles`` sampled comparison
    principles (the ensemble); ``chain_of_thought`` clamps to [0.4, 0.6]."""

    prompts: int | None = 512
    principles: int = 4
    chain_of_thought: bool = False
    few_shot: bool = True
    temperature: float = 1.0
    top_p: float = 0.95
    max_new_tokens: int = 256
    feedback_model: str = "checkpoint:sft"
    endpoint_key_env: str = "OPENAI_API_KEY"
    endpoint_timeout_s: float = 60.0
    max_len: int = 1024
    max_prompt_len: int = 512
    val_fraction: float = 0.05
    batch_size: int = 16
    cpu_threads: int | None = None
    seed: int = 1


@asset(
    group_name=CAI_GROUP,
    pool=GLOBAL_ASSETS_POOL,
    code_version=CAI_CODE_VERSION,
    deps=["constitution", "sl_cai_checkpoint"],
    description="Two SL-CAI replies per red-team prompt, compared by the feedback model as a "
    "multiple-choice question under sampled comparison principles: soft labels from the "
    "normalized (A)/(B) probabilities averaged over the ensemble, positions swapped for half "
    "the pairs and the position bias reported; rendered as preference pairs with a label.",
)
def ai_preferences(
    context: AssetExecutionContext, config: AIPreferencesConfig, storage: StorageResource
) -> MaterializeResult:
    store = storage.get()
    if config.cpu_threads:
        torch.set_num_threads(config.cpu_threads)
    loaded, digest = stored_constitution(store)
    feedback = FeedbackConfig(
        principles=config.principles,
        few_shot=config.few_shot,
        chain_of_thought=config.chain_of_thought,
        seed=config.seed,
    )
    build = PreferenceBuildConfig(
        max_len=config.max_len,
        max_prompt_len=config.max_prompt_len,
        val_fraction=config.val_fraction,
        seed=config.seed,
    )
    prompts = red_team_train_prompts(shared_data_dir(), config.prompts, config.seed)
    with tempfile.TemporaryDirectory() as tmp:
        models = ChatModels(
            store, tmp, config.endpoint_key_env, config.endpoint_timeout_s, config.batch_size
        )
        policy, policy_id = models.get("checkpoint:sl_cai")
        judge, judge_id = models.get(config.feedback_model)
        tokenizer = checkpoint_files(store, "sl_cai", tmp).tokenizer
        version_id = content_version(
            "ai_preferences", CAI_CODE_VERSION, config.model_dump(), [digest, policy_id, judge_id]
        )

        def write(version) -> ShardManifest:  # noqa: ANN001
            asked = [[Turn(role="user", content=p.text)] for p in prompts for _ in range(2)]
            seeds = [config.seed * 1_000_003 + i for i in range(len(asked))]
            replies = policy.generate(
                asked,
                config.max_new_tokens,
                seeds=seeds,
                temperature=config.temperature,
                top_p=config.top_p,
            )
            items = [
                FeedbackItem(p.id, p.text, replies[2 * i], replies[2 * i + 1])
                for i, p in enumerate(prompts)
            ]
            context.log.info(f"ai_preferences: {len(items)} pairs judged by {judge.description}")
            labels = ai_feedback(judge, items, loaded, feedback)
            table = pa.Table.from_pylist(
                [{**vars(item), **vars(fb)} for item, fb in zip(items, labels, strict=True)],
                schema=FEEDBACK_SCHEMA,
            )
            size = store.write_table(version.path("feedback.parquet"), table)
            pairs = [_labelled(item, fb.p_first) for item, fb in zip(items, labels, strict=True)]
            _, drops, counts = write_labelled_pairs(store, version, pairs, tokenizer, build)
            p_a = np.array([p for fb in labels for p in fb.p_a])
            first = np.array([fb.p_first for fb in labels])
            return ShardManifest(
                asset="ai_preferences",
                drops=drops,
                counts=dict(counts),
                shards=[
                    ShardInfo(
                        path=version.path("feedback.parquet"), rows=table.num_rows, bytes=size
                    )
                ],
                extra={
                    "position_bias": position_bias(p_a),
                    "judge": judge.description,
                    "mean_confidence": float(np.maximum(first, 1 - first).mean())
                    if len(first)
                    else None,
                    "samples": table.slice(0, SAMPLE_ROWS).to_pylist(),
                },
            )

        manifest = build_version(store, "ai_preferences", None, version_id, write)
    extra = manifest.extra
    keys = ("id", "prompt", "first", "second", "swapped", "p_first")
    return MaterializeResult(
        metadata={
            "counts": MetadataValue.json(manifest.counts),
            "position_bias": MetadataValue.json(extra["position_bias"]),
            "feedback_model": MetadataValue.text(extra["judge"]),
            "mean_label_confidence": MetadataValue.float(extra["mean_confidence"] or 0.0),
            "samples": MetadataValue.md(_sample_rows(extra["samples"], keys)),
            **version_metadata(manifest),
        }
    )


def _labelled(item: FeedbackItem, p_first: float) -> LabelledPair:
    """The pair with the preferred reply as ``chosen`` and its probability as the label."""
    first_better = p_first >= 0.5
    chosen, rejected = (item.first, item.second) if first_better else (item.second, item.first)
    pair = PreferencePair(
        id=item.id,
        source="ai_feedback",
        prompt=[Turn(role="user", content=item.prompt)],
        chosen=chosen,
        rejected=rejected,
    )
    return LabelledPair(pair, p_first if first_better else 1.0 - p_first)


@profiled("rl_cai_checkpoint")
class RLCAIAssetConfig(Config):
    """``method: dpo`` (default): DPO of the SL-CAI model on the AI-labelled pairs with the
    soft label as the target (−p·log σ(βΔ) − (1−p)·log σ(−βΔ)); the reference is the SL-CAI
    model, scored once. Defaults as ``dpo_checkpoint`` (β = 0.1, learning rate 5e-7).

    ``method: grpo``, the paper's route: a preference model (the SL-CAI model with a scalar
    head) trained on the soft labels for ``reward_steps`` at ``reward_lr`` (the pair settings
    above), then GRPO of the SL-CAI model on the ``rl_prompts`` against it (``grpo_*``,
    ``group_size``, ``max_new_tokens``; the rest as ``rl_checkpoint``)."""

    method: Literal["dpo", "grpo"] = "dpo"
    reward_steps: int = 100
    reward_lr: float = 1e-5
    grpo_steps: int = 100
    grpo_lr: float = 1e-6
    grpo_micro_batch_size: int = 16
    group_size: int = 8
    max_new_tokens: int = 256
    loss: PreferenceLoss = "sigmoid"
    beta: float = 0.1
    label_smoothing: float = 0.0
    micro_batch_size: int = 4
    grad_accum_steps: int = 8
    max_steps: int = 200
    lr: float = 5e-7
    warmup_steps: int = 10
    eval_every: int = 50
    eval_batches: int = 8
    toxicity_prompts: int = TOXICITY_TRACKING_PROMPTS
    checkpoint_every: int = 50
    log_every: int = 10
    reference_batch_size: int = 8
    cpu_threads: int | None = None
    seed: int = 1337
    fresh: bool = False
    config_path: str = ""
    work_dir: str = ""


@asset(
    group_name=CAI_GROUP,
    pool=GLOBAL_ASSETS_POOL,
    deps=["ai_preferences", "sl_cai_checkpoint", "rl_prompts", "refusal_classifier"],
    op_tags={"llmstack/gpu": "true"},
    description="The SL-CAI model trained with DPO on the AI-feedback pairs, the soft label "
    "as the target, against the SL-CAI model's log-probabilities scored once: the RL-CAI "
    "phase of constitutional AI.",
)
def rl_cai_checkpoint(
    context: AssetExecutionContext,
    config: RLCAIAssetConfig,
    storage: StorageResource,
    training: TrainingResource,
) -> MaterializeResult:
    store = storage.get()
    if config.cpu_threads:
        torch.set_num_threads(config.cpu_threads)
    pairs = read_manifest(store, "ai_preferences", None)
    with tempfile.TemporaryDirectory() as tmp:
        files = checkpoint_files(store, "sl_cai", tmp)
        data_dir = local_folder(store, pairs, tmp, "pairs")
        if config.method == "grpo":
            run = preference_model_then_grpo(
                context, store, training, config, files.weights, data_dir, tmp
            )
            return MaterializeResult(
                metadata={
                    **training_metadata(context, store, "rl_cai_checkpoint", run),
                    "start_model": MetadataValue.text(files.described),
                    "method": MetadataValue.text("preference model + GRPO"),
                    "data_version": MetadataValue.text(str(pairs.content_version)),
                }
            )
        index = load_preference_index(data_dir)
        key = reference_key(weights_digest(files.weights), index)
        reference_dir = Path(tmp) / "reference"
        device = pick_device("auto")
        rows = write_reference_cache(
            load_model(files.weights).to(device),
            data_dir,
            index,
            key,
            reference_dir,
            config.reference_batch_size,
            device,
            log=context.log.info,
        )
        train_config = _as(DPOAssetConfig, config).train_config(
            str(data_dir), str(files.weights), str(reference_dir)
        )
        run = run_training_asset(
            context,
            store,
            training,
            "rl_cai_checkpoint",
            train_config,
            fresh=config.fresh,
            work_dir=config.work_dir,
        )
    return MaterializeResult(
        metadata={
            **training_metadata(context, store, "rl_cai_checkpoint", run),
            "start_model": MetadataValue.text(files.described),
            "reference": MetadataValue.text(f"{files.described}: {rows} pairs, key {key.id}"),
            "data_version": MetadataValue.text(str(pairs.content_version)),
        }
    )


def preference_model_then_grpo(
    context: AssetExecutionContext,
    store: Storage,
    training: TrainingResource,
    config: RLCAIAssetConfig,
    sl_cai: Path,
    pairs_dir: Path,
    tmp: str,
) -> TrainedRun:
    """RL-CAI's online route: a Bradley–Terry preference model on the soft AI labels (its run
    kept under ``rl_cai_preference_model``), then GRPO from the SL-CAI model with that model's
    score as the reward."""
    shared = {
        name: getattr(config, name)
        for name in (
            "micro_batch_size",
            "grad_accum_steps",
            "warmup_steps",
            "eval_every",
            "eval_batches",
            "checkpoint_every",
            "log_every",
            "cpu_threads",
            "seed",
            "fresh",
            "work_dir",
        )
    }
    reward_config = RewardModelAssetConfig(
        **shared, max_steps=config.reward_steps, lr=config.reward_lr
    )
    preference = run_training_asset(
        context,
        store,
        training,
        "rl_cai_preference_model",
        reward_config.train_config(str(pairs_dir), str(sl_cai)),
        fresh=config.fresh,
        work_dir=config.work_dir,
    )
    preference_model, _ = local_run_files(store, preference.current, tmp)
    grpo = RLAssetConfig(
        rewards={"reward_model": 1.0},
        group_size=config.group_size,
        max_new_tokens=config.max_new_tokens,
        micro_batch_size=config.grpo_micro_batch_size,
        grad_accum_steps=1,
        max_steps=config.grpo_steps,
        lr=config.grpo_lr,
        eval_every=config.eval_every,
        toxicity_prompts=config.toxicity_prompts,
        checkpoint_every=config.checkpoint_every,
        log_every=config.log_every,
        cpu_threads=config.cpu_threads,
        seed=config.seed,
        fresh=config.fresh,
        work_dir=config.work_dir,
    )
    run, _ = run_grpo(
        context, store, training, "rl_cai_checkpoint", grpo, sl_cai, preference_model, tmp
    )
    return run
