"""The ``midtraining_mixture``: continued pretraining data, target domains plus replay.

Ibrahim et al. (2024, "Simple and Scalable Strategies to Continually Pre-train Large Language
Models") continue pretraining on new data with replay of the original mixture against
forgetting: 5% of the tokens was enough for a weak distribution shift, up to 25% for a
strong one.

Validation, to measure forgetting and gain: every pretraining validation document, once, from
the replay mixture's rows, under its domain (``val/<domain>``); and the target's held-out
documents (seeded hash below ``target_val_fraction``, at least ``min_val_docs`` a domain)
under ``<domain>_target``, apart from the pretraining ones. No copy of either trains. (A
target document that is a pretraining validation document validates through the replay; its
target row is dropped as ``pretraining_val``.)

Training: the target's other documents fill ``(1 - replay_fraction) x token_budget`` in
whole epochs up to ``max_target_epochs`` (Muennighoff et al. 2023: up to ~4 epochs of repeated
data are nearly as good as unique data) plus a seeded partial epoch; a seeded sample of the
replay mixture's rows (any domain) adds the replay share of the target tokens realized, so the
replay fraction holds when the target falls short. Tokens are exact (the base model's
tokenizer). Order: epoch ``e`` of the target spans ``[(e-1)/E, e/E)`` of the run (``E``
epochs), replay is spread over all of it, each at seeded random positions.

The version folder holds the text mixture (``text/``), the drops and the token shards
(:func:`~llmstack_dagster.core.training.token_shards.write_token_shards` with a fixed split).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, Field
from tokenizers import Tokenizer

from llmstack_dagster.core.curation.selection.mixture import EPOCH_COLUMN
from llmstack_dagster.core.midtraining.composition import (
    PRETRAINING_VAL,
    REPLAY,
    TARGET,
    TARGET_HELDOUT,
    InputTally,
    Part,
    composition_markdown,
    composition_rows,
)
from llmstack_dagster.core.midtraining.key_sort import KeySort
from llmstack_dagster.core.midtraining.sampling import (
    TargetEpochs,
    fill_target_epochs,
    heldout_mask,
    sample_replay,
)
from llmstack_dagster.core.midtraining.sources import (
    PretrainValIds,
    ReplayIndex,
    Rows,
    TargetIndex,
    index_replay,
    index_targets,
    load_val_ids,
    original_id,
)
from llmstack_dagster.core.scale.shard_map import ShardMap
from llmstack_dagster.core.schema import DOCUMENT_SCHEMA, DROP_SCHEMA, make_drop
from llmstack_dagster.core.storage import (
    OutputVersion,
    ShardManifest,
    ShardWriter,
    Storage,
    build_version,
    content_version,
    iter_shard_tables,
)
from llmstack_dagster.core.training.token_shards import (
    CODE_VERSION as TOKEN_SHARDS_CODE_VERSION,
)
from llmstack_dagster.core.training.token_shards import (
    SPLIT_COLUMN,
    TokenShardConfig,
    TokenShardIndex,
    manifest_hash,
    write_token_shards,
)
from llmstack_dagster.core.training.tokenizer import (
    load_tokenizer,
    tokenizer_eos_id,
    tokenizer_hash,
)

ASSET = "midtraining_mixture"
CODE_VERSION = "1"
ORIGIN_COLUMN = "midtraining_origin"  # target or replay
TARGET_VAL_SUFFIX = "_target"  # val domain of the target's held-out documents
TEXT_SCHEMA = pa.schema(
    list(DOCUMENT_SCHEMA)
    + [
        pa.field(SPLIT_COLUMN, pa.string(), nullable=False),
        pa.field(ORIGIN_COLUMN, pa.string(), nullable=False),
    ]
)
REASON_NOT_SAMPLED = "not_sampled"
# row status codes; the names of the dropped ones are the drop reasons
STATUSES = (REASON_NOT_SAMPLED, "train", "val", PRETRAINING_VAL, TARGET_HELDOUT)
NOT_SAMPLED, TRAIN, VAL, PRETRAIN_VAL, HELDOUT = range(len(STATUSES))
TARGET_STREAM, REPLAY_STREAM, ORDER_STREAM = range(3)  # independent seeded random streams

log = logging.getLogger(__name__)


class MidtrainingMixtureConfig(BaseModel):
    target_domains: list[str] = Field(min_length=1)
    token_budget: int = Field(gt=0, description="training tokens in total")
    replay_fraction: float = Field(
        0.05, ge=0.0, lt=1.0, description="share of training tokens replayed (Ibrahim et al.)"
    )
    max_target_epochs: float = Field(
        4.0, gt=0.0, description="repeats of the target allowed (Muennighoff et al. 2023)"
    )
    target_val_fraction: float = Field(0.05, ge=0.0, lt=1.0)
    min_val_docs: int = Field(2, ge=0, description="held-out target documents a domain, at least")
    seed: int = 0
    max_tokens_per_shard: int = Field(100_000_000, ge=1)
    shard_rows: int = Field(50_000, ge=1, description="rows per text shard and sort partition")


@dataclass
class _Decisions:
    """Per input row, in shard order: its status, train copies and exact tokens a copy."""

    rows: Rows
    status: np.ndarray  # int8: index into STATUSES
    copies: np.ndarray  # int32
    tokens: np.ndarray  # int64


def build_midtraining_mixture(
    storage: Storage,
    *,
    targets: dict[str, ShardManifest],
    replay: ShardManifest,
    pretrain_val_ids: PretrainValIds,
    tokenizer_path: Path,
    config: MidtrainingMixtureConfig,
    asset: str = ASSET,
    partition: str | None = None,
    shard_map: ShardMap | None = None,
    resume_key: str | None = None,
) -> ShardManifest:
    """Sample, split, order and tokenize the midtraining mixture; returns its token shards'
    manifest (``extra``: the composition, accounting, budgets and warnings). The tokenization
    runs one task per text shard on ``shard_map`` (default: inline); a retry with the same
    ``resume_key`` encodes only the shards its failed attempt did not (see
    :func:`~llmstack_dagster.core.storage.write_version`).

    ``targets``: the ``dsir_selected`` manifest of each target domain; ``replay``: the
    ``sampled_mixture``; ``pretrain_val_ids``: the pretraining token shards' manifest, the
    path of their ``val_ids.parquet`` or the ids. Same inputs, same version (nothing rebuilt).
    """
    if set(targets) != set(config.target_domains):
        raise ValueError(
            f"targets {sorted(targets)} do not match target_domains {config.target_domains}"
        )
    val_ids = load_val_ids(storage, pretrain_val_ids)
    ids_digest = hashlib.sha256("\n".join(sorted(val_ids)).encode()).hexdigest()
    inputs = [
        *(f"target:{d}:{_input_version(targets[d])}" for d in sorted(targets)),
        f"replay:{_input_version(replay)}",
        f"pretrain_val_ids:{ids_digest}",
        f"tokenizer:{tokenizer_hash(tokenizer_path)}:eos={tokenizer_eos_id(tokenizer_path)}",
        f"token_shards:{TOKEN_SHARDS_CODE_VERSION}",
    ]
    settings = config.model_dump(mode="json")
    version_id = content_version(asset, CODE_VERSION, settings, inputs)
    return build_version(
        storage,
        asset,
        partition,
        version_id,
        lambda v: _build(storage, targets, replay, val_ids, tokenizer_path, config, v, shard_map),
        resume_key,
    )


def _input_version(manifest: ShardManifest) -> str:
    """An input's content version, or the hash of its manifest when it has none."""
    return manifest.content_version or manifest_hash(manifest)


@dataclass
class _Plan:
    """What trains and what validates, before anything is written."""

    target_index: TargetIndex
    target: _Decisions
    replay: _Decisions
    epochs: TargetEpochs
    target_budget: int
    replay_budget: float
    warnings: list[str]

    @property
    def target_tokens(self) -> int:
        return int((self.target.tokens * self.target.copies).sum())

    @property
    def replay_tokens(self) -> int:
        return int((self.replay.tokens * self.replay.copies).sum())

    @property
    def train_rows(self) -> int:
        return int(self.target.copies.sum() + self.replay.copies.sum())


def _build(
    storage: Storage,
    targets: dict[str, ShardManifest],
    replay: ShardManifest,
    val_ids: set[str],
    tokenizer_path: Path,
    config: MidtrainingMixtureConfig,
    version: OutputVersion,
    shard_map: ShardMap | None,
) -> ShardManifest:
    tokenizer = load_tokenizer(tokenizer_path)
    plan = _plan(storage, tokenizer, targets, replay, val_ids, config)
    writer = _MixtureWriter(storage, version, config, plan.epochs, plan.train_rows)
    writer.write_input(
        TARGET, plan.target, [f"{TARGET}:{d}" for d in sorted(targets) for _ in targets[d].shards]
    )
    writer.write_input(REPLAY, plan.replay, [REPLAY] * len(replay.shards))
    shard_config = TokenShardConfig(max_tokens_per_shard=config.max_tokens_per_shard)
    text = writer.close()
    mixture_hash = str(version.content_version)
    shards = write_token_shards(
        storage, text, tokenizer_path, shard_config, version, mixture_hash, True, shard_map
    )
    train_tokens = plan.target_tokens + plan.replay_tokens
    if shards.counts["train_tokens"] != train_tokens:
        raise RuntimeError(
            f"{version.asset}: the token shards hold {shards.counts['train_tokens']} training "
            f"tokens, the sampling counted {train_tokens}"
        )
    for message in plan.warnings:
        log.warning("%s: %s", version.asset, message)
    log.info(
        "%s: %d target + %d replay training tokens, %d val documents",
        version.asset, plan.target_tokens, plan.replay_tokens,
        shards.counts["documents"] - plan.train_rows,
    )  # fmt: skip
    index = TokenShardIndex.model_validate_json(storage.read_bytes(shards.extra["index"]))
    return _manifest(shards, index, plan, writer, config, version)


def _plan(
    storage: Storage,
    tokenizer: Tokenizer,
    targets: dict[str, ShardManifest],
    replay: ShardManifest,
    val_ids: set[str],
    config: MidtrainingMixtureConfig,
) -> _Plan:
    replay_index = index_replay(storage, replay, val_ids)
    target_index = index_targets(storage, targets, tokenizer, config.seed)
    warnings: list[str] = []
    target, epochs, target_budget = _plan_target(target_index, replay_index, config, warnings)
    target_tokens = int((target.tokens * target.copies).sum())
    replay_budget = target_tokens * config.replay_fraction / (1 - config.replay_fraction)
    heldout_hashes = target_index.id_hash[target.status == VAL]
    replay_decisions = _plan_replay(
        storage, tokenizer, replay_index, heldout_hashes, replay_budget, config, warnings
    )
    return _Plan(
        target_index, target, replay_decisions, epochs, target_budget, replay_budget, warnings
    )


def _manifest(
    shards: ShardManifest,
    index: TokenShardIndex,
    plan: _Plan,
    writer: _MixtureWriter,
    config: MidtrainingMixtureConfig,
    version: OutputVersion,
) -> ShardManifest:
    """The token shards' manifest with the drops, the accounting and the composition."""
    pool = np.isin(plan.target.status, (TRAIN, NOT_SAMPLED))
    targets = plan.target_index
    available = {
        domain: int(targets.tokens[pool & (targets.domain_of == number)].sum())
        for number, domain in enumerate(targets.domains)
    }
    rows = composition_rows(writer.train, available, index, writer.val_sources)
    reasons = sum((t.dropped for t in writer.inputs.values()), Counter())
    read = sum(t.read for t in writer.inputs.values())
    dropped = sum(reasons.values())
    counts = {"in": read, "kept": read - dropped, "dropped": dropped, "train_rows": plan.train_rows}
    train_tokens = plan.target_tokens + plan.replay_tokens
    extra = {
        "composition": rows,
        "composition_markdown": composition_markdown(rows),
        "inputs": {name: tally.as_dict() for name, tally in sorted(writer.inputs.items())},
        "token_budget": config.token_budget,
        "target_budget": plan.target_budget,
        "replay_budget": round(plan.replay_budget),
        "train_tokens": train_tokens,
        "target_tokens": plan.target_tokens,
        "replay_tokens": plan.replay_tokens,
        "replay_fraction": config.replay_fraction,
        "realized_replay_fraction": plan.replay_tokens / train_tokens,
        "target_epochs": plan.target_tokens / plan.epochs.available_tokens,
        "target_available_tokens": plan.epochs.available_tokens,
        "target_shortfall": plan.epochs.shortfall,
        "warnings": [*shards.extra["warnings"], *plan.warnings],
        "text_mixture": version.path("text"),
        "seed": config.seed,
        "target_domains": sorted(config.target_domains),
    }
    return shards.model_copy(
        update={
            "drops": writer.drops.close(),
            "counts": shards.counts | counts | dict(sorted(reasons.items())),
            "extra": shards.extra | extra,
        }
    )


def _plan_target(
    index: TargetIndex, replay: ReplayIndex, config: MidtrainingMixtureConfig, warnings: list[str]
) -> tuple[_Decisions, TargetEpochs, int]:
    """Held-out share, pretraining val documents kept out, epochs of the rest."""
    pretrain_val = np.isin(index.id_hash, replay.pretrain_val_hashes)
    heldout = heldout_mask(
        index.domain_of,
        index.heldout_key,
        ~pretrain_val,
        config.target_val_fraction,
        config.min_val_docs,
    )
    pool = ~pretrain_val & ~heldout
    budget = config.token_budget - round(config.replay_fraction * config.token_budget)
    rng = np.random.default_rng([config.seed, TARGET_STREAM])
    epochs = fill_target_epochs(index.tokens, pool, budget, config.max_target_epochs, rng)
    if not epochs.copies.any():
        raise ValueError(
            f"no target tokens to train on: target {index.domains} has {len(pool)} document(s) "
            f"({int(pretrain_val.sum())} pretraining val, {int(heldout.sum())} held out) for "
            f"a target budget of {budget} tokens"
        )
    for number, domain in enumerate(index.domains):
        if not heldout[index.domain_of == number].any():
            warnings.append(f"target domain {domain!r} has no held-out validation documents")
    if epochs.shortfall:
        warnings.append(
            f"target {index.domains} has {epochs.available_tokens:,} training tokens: "
            f"{config.max_target_epochs:g} epochs give {budget - epochs.shortfall:,} of the "
            f"{budget:,} target tokens (shortfall {epochs.shortfall:,}); replay is scaled "
            "down to keep replay_fraction"
        )
    status = np.full(len(pool), NOT_SAMPLED, dtype=np.int8)
    status[epochs.copies > 0] = TRAIN
    status[heldout] = VAL
    status[pretrain_val] = PRETRAIN_VAL
    return _Decisions(index.rows, status, epochs.copies, index.tokens), epochs, budget


def _plan_replay(
    storage: Storage,
    tokenizer: Tokenizer,
    index: ReplayIndex,
    heldout_hashes: np.ndarray,
    budget: float,
    config: MidtrainingMixtureConfig,
    warnings: list[str],
) -> _Decisions:
    """A seeded sample of the rows that copy no validation document, closest to ``budget``."""
    pretrain_val = np.isin(index.original_hash, index.pretrain_val_hashes)
    heldout_copy = np.isin(index.original_hash, heldout_hashes) & ~pretrain_val
    eligible = np.nonzero(~pretrain_val & ~heldout_copy)[0]
    order = eligible[np.random.default_rng([config.seed, REPLAY_STREAM]).permutation(len(eligible))]
    rows, tokens = sample_replay(
        order,
        index.text_bytes,
        budget,
        lambda chosen: index.rows.count_tokens(storage, tokenizer, chosen),
    )
    if len(rows) == len(order) and tokens.sum() < budget:
        warnings.append(
            f"replay: every one of its {len(order):,} training rows gives {int(tokens.sum()):,} "
            f"of the {round(budget):,} replay tokens asked for"
        )
    if index.missing_val_ids:
        warnings.append(
            f"{index.missing_val_ids} pretraining validation id(s) are not in the replay "
            "mixture (another mixture version?): kept out of training, but not in val"
        )
    status = np.full(len(index.original_hash), NOT_SAMPLED, dtype=np.int8)
    status[rows] = TRAIN
    status[pretrain_val] = PRETRAIN_VAL
    status[heldout_copy] = HELDOUT
    status[index.val_row] = VAL
    copies = np.zeros(len(status), dtype=np.int32)
    copies[rows] = 1
    row_tokens = np.zeros(len(status), dtype=np.int64)
    row_tokens[rows] = tokens
    return _Decisions(index.rows, status, copies, row_tokens)


def _with_split(table: pa.Table, split: str, origin: str) -> pa.Table:
    n = table.num_rows
    table = table.append_column(SPLIT_COLUMN, pa.array([split] * n, pa.string()))
    return table.append_column(ORIGIN_COLUMN, pa.array([origin] * n, pa.string()))


def _set_column(table: pa.Table, name: str, values: list[str]) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, pa.array(values, pa.string()))


class _MixtureWriter:
    """The write pass: train copies into the key sort, val rows and drops straight out, and
    the tallies of what became of every row."""

    def __init__(
        self,
        storage: Storage,
        version: OutputVersion,
        config: MidtrainingMixtureConfig,
        epochs: TargetEpochs,
        train_rows: int,
    ) -> None:
        self.storage, self.version, self.epochs = storage, version, epochs
        self.rng = np.random.default_rng([config.seed, ORDER_STREAM])
        text = version.path("text")
        rows = config.shard_rows
        self.val = ShardWriter(storage, text, TEXT_SCHEMA, prefix="val", max_rows=rows)
        self.train_out = ShardWriter(storage, text, TEXT_SCHEMA, prefix="train", max_rows=rows)
        self.drops = ShardWriter(storage, version.path("drops"), DROP_SCHEMA, prefix="drops")
        self.sort = KeySort(storage, version.path("_sort"), TEXT_SCHEMA, train_rows, rows)
        self.train: dict[tuple[str, str], Part] = defaultdict(Part)
        self.inputs: dict[str, InputTally] = defaultdict(InputTally)
        self.val_sources: dict[str, str] = {}

    def write_input(self, origin: str, decisions: _Decisions, names: list[str]) -> None:
        """Every row of one source's shards (``names``: the input each shard belongs to)."""
        tables = iter_shard_tables(self.storage, decisions.rows.shards)
        for number, ((shard, table), name) in enumerate(zip(tables, names, strict=True)):
            part = decisions.rows.slice(number)
            status = decisions.status[part]
            if len(status) != table.num_rows:
                raise RuntimeError(f"{self.version.asset}: {shard.path} changed while read")
            tally = self.inputs[name]
            tally.read += table.num_rows
            self._train(origin, table, decisions.copies[part], decisions.tokens[part], tally)
            self._val(origin, table, status == VAL, tally)
            self._drop(name, table, status, tally)

    def _train(
        self,
        origin: str,
        table: pa.Table,
        copies: np.ndarray,
        tokens: np.ndarray,
        tally: InputTally,
    ) -> None:
        rows = np.repeat(np.arange(table.num_rows), copies)
        if not len(rows):
            return
        starts = np.concatenate([[0], np.cumsum(copies)[:-1]])
        epoch = np.arange(len(rows)) - starts[rows] + 1
        out = table.select(DOCUMENT_SCHEMA.names).take(rows)
        ids = out.column("id").to_pylist()
        ids = [i if e == 1 else f"{i}#epoch{e}" for i, e in zip(ids, epoch, strict=True)]
        self.sort.add(
            _with_split(_set_column(out, "id", ids), "train", origin), self._keys(origin, epoch)
        )
        domains = table.column("domain").to_pylist()
        for row in np.nonzero(copies)[0]:
            part = self.train[(origin, domains[row])]
            part.documents += 1
            part.rows += int(copies[row])
            part.tokens += int(copies[row] * tokens[row])
        tally.train += int((copies > 0).sum())

    def _keys(self, origin: str, epoch: np.ndarray) -> np.ndarray:
        """Order keys in [0, 1): target epoch ``e`` in ``[(e-1)/E, e/E)``, replay anywhere."""
        u = self.rng.random(len(epoch))
        if origin == REPLAY:
            return u
        width = np.where(epoch <= self.epochs.full_epochs, 1.0, self.epochs.partial)
        return (epoch - 1 + u * width) / self.epochs.epochs

    def _val(self, origin: str, table: pa.Table, mask: np.ndarray, tally: InputTally) -> None:
        rows = table.filter(pa.array(mask))
        if not rows.num_rows:
            return
        out = rows.select(DOCUMENT_SCHEMA.names)
        if origin == TARGET:
            domains = [d + TARGET_VAL_SUFFIX for d in out.column("domain").to_pylist()]
            out = _set_column(out, "domain", domains)
        elif EPOCH_COLUMN in rows.column_names:  # the document's own id, not its copy's
            pairs = zip(
                rows.column("id").to_pylist(), rows.column(EPOCH_COLUMN).to_pylist(), strict=True
            )
            out = _set_column(out, "id", [original_id(i, e) for i, e in pairs])
        source = TARGET_HELDOUT if origin == TARGET else PRETRAINING_VAL
        self.val_sources.update(dict.fromkeys(out.column("domain").to_pylist(), source))
        self.val.write_table(_with_split(out, "val", origin))
        tally.val += out.num_rows

    def _drop(self, name: str, table: pa.Table, status: np.ndarray, tally: InputTally) -> None:
        dropped = np.nonzero(~np.isin(status, (TRAIN, VAL)))[0]
        rows = table.select(["id", "domain", "source", "text"]).take(dropped).to_pylist()
        for i, row in zip(dropped, rows, strict=True):
            reason = STATUSES[status[i]]
            tally.dropped[reason] += 1
            self.drops.write_row(
                make_drop(
                    stage=self.version.asset,
                    domain=row["domain"],
                    source=row["source"],
                    id=row["id"],
                    reason=reason,
                    detail=name,
                    sample=row["text"],
                )
            )

    def close(self) -> ShardManifest:
        """The text mixture: val rows, then train rows in key order."""
        self.sort.write_to(self.train_out)
        shards = [*self.val.close(), *self.train_out.close()]
        return ShardManifest(
            asset=self.version.asset, partition=self.version.partition, shards=shards
        )
