"""Packed token shards: documents tokenized in parallel, EOS after each, raw memmap files.

Each input shard is one task on a :class:`~llmstack_dagster.core.scale.shard_map.ShardMap`
(the tokenizer loaded once per worker): it writes its documents' token ids into the version's
``.work/`` folder. The driver then splits and packs them in input order, so the output is the
same, byte for byte, on any engine and with any number of workers; a retry with the same
``resume_key`` encodes only the shards not done yet.

Layout under ``{asset}/{partition}/``::

    index.json                       TokenShardIndex (written last)
    tokenizer.json                   copy of the tokenizer, so the folder is self-contained
    train/part-00000.bin             uint16 (vocab <= 65536) or uint32 little-endian tokens
    val/<domain>/part-00000.bin      held-out documents, one folder per domain

A document goes to validation when its id hashes below ``val_fraction`` or its domain has
fewer than ``min_val_docs`` validation documents so far, so every domain gets a val split;
but a domain's last document stays in training when the domain has none there yet, so no
domain loses all of its training tokens (see :func:`_goes_to_val`). A caller that fixes the
split itself passes ``fixed_split``: the input's ``split`` column then decides, document by
document, with no hash rule.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
from collections import Counter
from datetime import datetime
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash
from pydantic import BaseModel, Field
from tokenizers import Tokenizer

from llmstack_dagster.core.progress import Progress
from llmstack_dagster.core.scale.resumable import map_resumable
from llmstack_dagster.core.scale.shard_map import ShardMap, local_or
from llmstack_dagster.core.storage import (
    OutputVersion,
    ShardInfo,
    ShardManifest,
    Storage,
    content_version,
    iter_shard_tables,
    write_version,
)
from llmstack_dagster.core.training.tokenizer import (
    TOKENIZER_FILE,
    load_tokenizer,
    tokenizer_eos_id,
    tokenizer_hash,
)

INDEX_FILE = "index.json"
VAL_IDS_FILE = "val_ids.parquet"  # ids of the documents in the validation split
SPLIT_COLUMN = "split"  # with ``fixed_split``: "train" or "val" for each input document
TOKENS_COLUMN = "tokens"  # an encoded shard's token ids per document (engine task output)
CODE_VERSION = "3"  # 2: a domain keeps a training document; 3: val_ids.parquet

log = logging.getLogger(__name__)


class TokenShardConfig(BaseModel):
    val_fraction: float = Field(default=0.005, ge=0.0, lt=1.0)
    min_val_docs: int = Field(default=2, ge=0)
    max_tokens_per_shard: int = Field(default=100_000_000, ge=1)
    docs_per_task: int = Field(default=256, ge=1, description="documents per encode call")
    seed: int = 0


class TokenShard(BaseModel):
    path: str
    split: str
    domain: str | None
    tokens: int
    docs: int
    text_bytes: int


class DomainStats(BaseModel):
    train_docs: int = 0
    train_tokens: int = 0
    val_docs: int = 0
    val_tokens: int = 0
    val_text_bytes: int = 0
    few_docs: bool = Field(
        default=False,
        description="the domain has <= min_val_docs documents: its val split is short or empty",
    )


class TokenShardIndex(BaseModel):
    """Describes one tokenized dataset; the trainer reads only this and the listed files."""

    dtype: str
    vocab_size: int
    eos_id: int
    tokenizer_file: str = TOKENIZER_FILE
    tokenizer_hash: str
    mixture_hash: str
    data_version: str | None = None  # the content version of these shards (see storage)
    date_min: datetime | None = None
    date_max: datetime | None = None
    shards: list[TokenShard] = Field(default_factory=list)
    domains: dict[str, DomainStats] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)

    def split_shards(self, split: str, domain: str | None = None) -> list[TokenShard]:
        return [
            s for s in self.shards if s.split == split and (domain is None or s.domain == domain)
        ]


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds every token id."""
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def load_token_index(data_dir: Path) -> TokenShardIndex:
    return TokenShardIndex.model_validate_json((Path(data_dir) / INDEX_FILE).read_text())


def read_tokens(data_dir: Path, index: TokenShardIndex, shard: TokenShard) -> np.ndarray:
    """A read-only memmap of one shard's tokens."""
    path = Path(data_dir) / shard.path
    return np.memmap(path, dtype=np.dtype(index.dtype), mode="r", shape=(shard.tokens,))


def load_worker_tokenizer(tokenizer_json: str) -> Tokenizer:
    """A worker's tokenizer, loaded once (the ``setup`` of the encoding stage)."""
    return Tokenizer.from_str(tokenizer_json)


def encode_shard(
    storage: Storage,
    folder: str,
    columns: list[str],
    batch_docs: int,
    tokenizer: Tokenizer,
    job: tuple[int, ShardInfo],
) -> ShardInfo:
    """One engine task: an input shard's documents as token ids (no EOS) with their
    ``columns`` and UTF-8 size, written as ``{folder}/part-<index>.parquet``."""
    index, shard = job
    table = storage.read_table(shard.path, columns=columns)
    texts = table.column("text").to_pylist()
    ids: list[np.ndarray] = [np.zeros(0, dtype=np.uint32)]
    for start in range(0, len(texts), batch_docs):
        batch = tokenizer.encode_batch_fast(texts[start : start + batch_docs],
                                            add_special_tokens=False)  # fmt: skip
        ids.extend(np.asarray(e.ids, dtype=np.uint32) for e in batch)
    offsets = np.cumsum([0, *(len(a) for a in ids[1:])], dtype=np.int64)
    tokens = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(ids)))
    encoded = (
        table.drop_columns(["text"])
        .append_column("text_bytes", pc.binary_length(table.column("text")).cast(pa.int64()))
        .append_column(TOKENS_COLUMN, tokens)
    )
    rel = posixpath.join(folder, f"part-{index:05d}.parquet")
    size = storage.write_table(rel, encoded)
    return ShardInfo(path=rel, rows=encoded.num_rows, bytes=size)


class _SplitWriter:
    """Buffers documents of one split/domain and writes bounded raw token shards."""

    def __init__(
        self,
        storage: Storage,
        base: str,
        folder: str,
        split: str,
        domain: str | None,
        dtype: np.dtype,
        max_tokens: int,
    ) -> None:
        self.storage, self.base, self.folder = storage, base, folder
        self.split, self.domain, self.dtype, self.max_tokens = split, domain, dtype, max_tokens
        self.shards: list[TokenShard] = []
        self._parts: list[np.ndarray] = []
        self._tokens = self._docs = self._bytes = 0

    def add(self, ids: np.ndarray, text_bytes: int) -> None:
        self._parts.append(ids)
        self._tokens += len(ids)
        self._docs += 1
        self._bytes += text_bytes
        if self._tokens >= self.max_tokens:
            self.flush()

    def flush(self) -> None:
        if not self._parts:
            return
        rel = posixpath.join(self.folder, f"part-{len(self.shards):05d}.bin")
        with self.storage.open_atomic(posixpath.join(self.base, rel)) as handle:
            handle.write(np.concatenate(self._parts).astype(self.dtype.newbyteorder("<")).tobytes())
        self.shards.append(
            TokenShard(
                path=rel,
                split=self.split,
                domain=self.domain,
                tokens=self._tokens,
                docs=self._docs,
                text_bytes=self._bytes,
            )
        )
        self._parts, self._tokens, self._docs, self._bytes = [], 0, 0, 0


def _is_val(doc_id: str, seed: int, fraction: float) -> bool:
    return xxhash.xxh64_intdigest(doc_id.encode(), seed=seed) / 2**64 < fraction


def _goes_to_val(doc_id: str, dom: DomainStats, remaining: int, config: TokenShardConfig) -> bool:
    """The train/val decision for one document of a domain (``remaining``: its domain's
    documents still to come).

    A domain's last document never goes to validation while the domain has no training
    document: every domain keeps training tokens, at the price of a short (or, for a
    one-document domain, no) validation split, which the index flags (``few_docs``). We keep
    whole documents rather than cutting a long one into train and val windows: windows of one
    document would put text the model trained on next to its validation text, and the split
    would stop being by document (the lineage and the val/train counts are per document).
    """
    if dom.train_docs == 0 and remaining == 0:
        return False
    forced = dom.val_docs < config.min_val_docs
    return forced or _is_val(doc_id, config.seed, config.val_fraction)


def _fixed_split_is_val(split: str | None, doc_id: str) -> bool:
    if split not in ("train", "val"):
        raise ValueError(
            f"document {doc_id!r}: {SPLIT_COLUMN} is {split!r}, expected 'train' or 'val'"
        )
    return split == "val"


def _domain_doc_counts(storage: Storage, inputs: ShardManifest) -> Counter[str]:
    """Documents per domain in the input mixture (a pass over the ``domain`` column only)."""
    counts: Counter[str] = Counter()
    for _, table in iter_shard_tables(storage, inputs.shards, columns=["domain"]):
        counts.update(table.column("domain").to_pylist())
    return counts


def _few_docs_warnings(
    stats: dict[str, DomainStats], doc_counts: Counter[str], min_val_docs: int
) -> list[str]:
    """Flag every domain with <= ``min_val_docs`` documents; a warning per flagged domain."""
    warnings = []
    for domain, dom in sorted(stats.items()):
        dom.few_docs = doc_counts[domain] <= min_val_docs
        if dom.few_docs:
            warnings.append(
                f"domain {domain!r} has {doc_counts[domain]} document(s) (<= min_val_docs="
                f"{min_val_docs}): {dom.train_docs} train / {dom.val_docs} val documents"
            )
    for message in warnings:
        log.warning("tokenized shards: %s", message)
    return warnings


def manifest_hash(manifest: ShardManifest) -> str:
    """SHA-256 of a manifest's canonical JSON: identifies the exact input mixture."""
    return hashlib.sha256(json.dumps(manifest.model_dump(), sort_keys=True).encode()).hexdigest()


def run_token_shards(
    storage: Storage,
    inputs: ShardManifest,
    tokenizer_path: Path,
    config: TokenShardConfig,
    asset: str = "tokenized_shards",
    partition: str | None = None,
    mixture_hash: str | None = None,
    fixed_split: bool = False,
    shard_map: ShardMap | None = None,
    resume_key: str | None = None,
) -> ShardManifest:
    """Tokenize the mixture's document shards into packed train/val token shards.

    Each input shard is encoded by one task on ``shard_map`` (inline on this machine by
    default); the output is identical for any engine and worker count. The shards, the index
    and a copy of the tokenizer are one version folder (the manifest's ``folder``).
    ``fixed_split``: the input's ``split`` column decides each document's split.
    ``resume_key``: see :func:`~llmstack_dagster.core.storage.write_version`.
    """
    mixture_hash = mixture_hash or manifest_hash(inputs)
    settings = config.model_dump(mode="json")
    if fixed_split:
        settings["fixed_split"] = True
    inputs_id = [inputs.content_version, tokenizer_hash(tokenizer_path)]
    version_id = content_version(asset, CODE_VERSION, settings, inputs_id)
    with write_version(storage, asset, partition, version_id, resume_key) as version:
        manifest = write_token_shards(
            storage, inputs, tokenizer_path, config, version, mixture_hash, fixed_split, shard_map
        )
        return version.commit(manifest)


def _encode_inputs(
    storage: Storage,
    inputs: ShardManifest,
    tokenizer: Tokenizer,
    config: TokenShardConfig,
    version: OutputVersion,
    columns: list[str],
    engine: ShardMap,
) -> list[ShardInfo]:
    """Every input shard encoded by one engine task into ``version``'s work folder."""
    engine.require_shared_root(storage.root)
    progress = Progress(f"{version.asset} encoding", inputs.rows, log)
    encoded = map_resumable(
        engine, storage, version.work("encode"),
        partial(encode_shard, storage, version.work("encoded"), columns, config.docs_per_task),
        list(enumerate(inputs.shards)),
        setup=partial(load_worker_tokenizer, tokenizer.to_str()),
        on_result=lambda shard: progress.advance(shard.rows),
    )  # fmt: skip
    progress.finish()
    return encoded


def write_token_shards(
    storage: Storage,
    inputs: ShardManifest,
    tokenizer_path: Path,
    config: TokenShardConfig,
    version: OutputVersion,
    mixture_hash: str,
    fixed_split: bool = False,
    shard_map: ShardMap | None = None,
) -> ShardManifest:
    """Write the token shards, index and tokenizer copy into ``version`` (not committed);
    the encoding runs one task per input shard on ``shard_map`` (default: inline)."""
    asset, partition, base = version.asset, version.partition, version.folder
    tokenizer = load_tokenizer(tokenizer_path)
    eos_id = tokenizer_eos_id(tokenizer_path)
    vocab_size = tokenizer.get_vocab_size()
    dtype = token_dtype(vocab_size)
    train = _SplitWriter(storage, base, "train", "train", None, dtype, config.max_tokens_per_shard)
    doc_counts = Counter() if fixed_split else _domain_doc_counts(storage, inputs)
    val: dict[str, _SplitWriter] = {}
    val_ids: list[str] = []
    stats: dict[str, DomainStats] = {}
    date_min: datetime | None = None
    date_max: datetime | None = None
    eos = np.asarray([eos_id], dtype=np.uint32)
    columns = ["id", "text", "domain", "created", *([SPLIT_COLUMN] if fixed_split else [])]
    encoded = _encode_inputs(
        storage, inputs, tokenizer, config, version, columns, local_or(shard_map)
    )
    for _, table in iter_shard_tables(storage, encoded):
        tokens = table.column(TOKENS_COLUMN).combine_chunks()
        values, offsets = tokens.values.to_numpy(), tokens.offsets.to_numpy()
        n = table.num_rows
        splits = table.column(SPLIT_COLUMN).to_pylist() if fixed_split else [None] * n
        if n:
            bounds = pc.min_max(table.column("created")).as_py()
            date_min = min(filter(None, [date_min, bounds["min"]]))
            date_max = max(filter(None, [date_max, bounds["max"]]))
        for i, doc_id, domain, split, n_bytes in zip(
            range(n),
            table.column("id").to_pylist(),
            table.column("domain").to_pylist(),
            splits,
            table.column("text_bytes").to_pylist(),
            strict=True,
        ):
            dom = stats.setdefault(domain, DomainStats())
            doc = np.concatenate([values[offsets[i] : offsets[i + 1]], eos])
            remaining = doc_counts[domain] - dom.train_docs - dom.val_docs - 1
            to_val = (
                _fixed_split_is_val(split, doc_id)
                if fixed_split
                else _goes_to_val(doc_id, dom, remaining, config)
            )
            if to_val:
                writer = val.get(domain)
                if writer is None:
                    writer = val[domain] = _SplitWriter(
                        storage,
                        base,
                        posixpath.join("val", domain),
                        "val",
                        domain,
                        dtype,
                        config.max_tokens_per_shard,
                    )
                writer.add(doc, n_bytes)
                val_ids.append(doc_id)
                dom.val_docs += 1
                dom.val_tokens += len(doc)
                dom.val_text_bytes += n_bytes
            else:
                train.add(doc, n_bytes)
                dom.train_docs += 1
                dom.train_tokens += len(doc)
    for writer in [train, *val.values()]:
        writer.flush()
    val_ids_rel = posixpath.join(base, VAL_IDS_FILE)  # small: the held-out documents only
    storage.write_table(val_ids_rel, pa.table({"id": pa.array(val_ids, pa.string())}))
    warnings = [] if fixed_split else _few_docs_warnings(stats, doc_counts, config.min_val_docs)
    storage.write_bytes(posixpath.join(base, TOKENIZER_FILE), tokenizer.to_str().encode())
    index = TokenShardIndex(
        dtype=dtype.name,
        vocab_size=vocab_size,
        eos_id=eos_id,
        tokenizer_hash=tokenizer_hash(tokenizer_path),
        mixture_hash=mixture_hash,
        data_version=version.content_version,
        date_min=date_min,
        date_max=date_max,
        shards=[*train.shards, *(s for d in sorted(val) for s in val[d].shards)],
        domains=dict(sorted(stats.items())),
        warnings=warnings,
    )
    storage.write_bytes(posixpath.join(base, INDEX_FILE), index.model_dump_json(indent=2).encode())
    return ShardManifest(
        asset=asset,
        partition=partition,
        shards=[
            ShardInfo(
                path=posixpath.join(base, s.path), rows=s.tokens, bytes=s.tokens * dtype.itemsize
            )
            for s in index.shards
        ],
        counts={
            "documents": sum(d.train_docs + d.val_docs for d in stats.values()),
            "train_tokens": sum(d.train_tokens for d in stats.values()),
            "val_tokens": sum(d.val_tokens for d in stats.values()),
        },
        extra={
            "index": posixpath.join(base, INDEX_FILE),
            "val_ids": val_ids_rel,
            "dtype": dtype.name,
            "vocab_size": vocab_size,
            "tokenizer_hash": index.tokenizer_hash,
            "mixture_hash": index.mixture_hash,
            "warnings": warnings,
        },
    )
