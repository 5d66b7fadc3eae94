"""Pass 1 over the midtraining inputs: per row, what sampling needs; exact token counts.

Rows are matched across inputs by a 64-bit hash of the id of the document they hold (a
mixture's repeat ``e`` of a document has id ``<id>#epoch<e>``): an index of 8 bytes a row.
A collision can only keep one more document out of training, never let a held-out one in.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc
import xxhash
from tokenizers import Tokenizer

from llmstack_dagster.core.curation.selection.mixture import EPOCH_COLUMN
from llmstack_dagster.core.curation.selection.shard_tables import shard_schema
from llmstack_dagster.core.storage import ShardInfo, ShardManifest, Storage, iter_shard_tables

ENCODE_BATCH = 1024  # texts per tokenizer call
PretrainValIds = ShardManifest | str | AbstractSet[str]


def id_hash(doc_id: str) -> int:
    return xxhash.xxh64_intdigest(doc_id.encode())


def unit_hash(doc_id: str, seed: int, salt: str) -> float:
    """A seeded uniform number in [0, 1) for a document, independent for each ``salt``."""
    return xxhash.xxh64_intdigest(f"{salt}:{doc_id}".encode(), seed=seed) / 2**64


def original_id(row_id: str, epoch: int | None) -> str:
    """The id of the document a mixture row holds (repeat ``e > 1`` is ``<id>#epoch<e>``)."""
    return row_id.removesuffix(f"#epoch{epoch}") if epoch and epoch > 1 else row_id


def count_tokens(tokenizer: Tokenizer, texts: list[str]) -> np.ndarray:
    """Tokens per text as the token shards count them: the encoding plus one EOS."""
    counts = np.empty(len(texts), dtype=np.int64)
    for start in range(0, len(texts), ENCODE_BATCH):
        batch = tokenizer.encode_batch_fast(
            texts[start : start + ENCODE_BATCH], add_special_tokens=False
        )
        counts[start : start + len(batch)] = [len(e.ids) + 1 for e in batch]
    return counts


def load_val_ids(storage: Storage, val_ids: PretrainValIds) -> set[str]:
    """The ids of the pretraining validation documents: from the token shards' manifest (its
    ``val_ids`` file), a ``val_ids.parquet`` path under the storage root, or the ids."""
    if isinstance(val_ids, ShardManifest):
        val_ids = str(val_ids.extra["val_ids"])
    if isinstance(val_ids, str):
        return set(storage.read_table(val_ids, columns=["id"]).column("id").to_pylist())
    return set(val_ids)


@dataclass
class Rows:
    """The rows of a list of shards, numbered in shard order."""

    shards: list[ShardInfo]
    offsets: np.ndarray  # offsets[i]: number of shard i's first row; offsets[-1]: all rows

    @classmethod
    def of(cls, shards: list[ShardInfo], sizes: Iterable[int]) -> Rows:
        return cls(shards, np.concatenate([[0], np.cumsum(list(sizes), dtype=np.int64)]))

    def slice(self, shard: int) -> slice:
        return slice(int(self.offsets[shard]), int(self.offsets[shard + 1]))

    def count_tokens(self, storage: Storage, tokenizer: Tokenizer, rows: np.ndarray) -> np.ndarray:
        """Exact tokens of the given rows (any order), reading only the shards that hold them."""
        out = np.empty(len(rows), dtype=np.int64)
        shard_of = np.searchsorted(self.offsets, rows, side="right") - 1
        for shard in np.unique(shard_of):
            where = np.nonzero(shard_of == shard)[0]
            table = storage.read_table(self.shards[shard].path, columns=["text"])
            texts = table.column("text").take(rows[where] - self.offsets[shard]).to_pylist()
            out[where] = count_tokens(tokenizer, texts)
        return out


@dataclass
class ReplayIndex:
    rows: Rows
    original_hash: np.ndarray  # uint64: hash of the id of the document each row holds
    text_bytes: np.ndarray  # int64: UTF-8 bytes (sizes the exact token counting)
    val_row: np.ndarray  # bool: the one row of each pretraining val document that goes to val
    pretrain_val_hashes: np.ndarray  # uint64: every pretraining val document
    missing_val_ids: int  # pretraining val ids that no replay row has


def index_replay(storage: Storage, replay: ShardManifest, val_ids: set[str]) -> ReplayIndex:
    """One pass over the replay mixture's ids and text lengths."""
    first = replay.shards[:1]
    has_epochs = bool(first) and EPOCH_COLUMN in shard_schema(storage, first[0]).names
    columns = ["id", "text", *([EPOCH_COLUMN] if has_epochs else [])]
    hashes, lengths, val_rows, sizes = [], [], [], []
    found: set[str] = set()
    val_originals: set[str] = set()
    for _, table in iter_shard_tables(storage, replay.shards, columns=columns):
        ids = table.column("id").to_pylist()
        epochs = table.column(EPOCH_COLUMN).to_pylist() if has_epochs else [None] * len(ids)
        is_val = np.zeros(len(ids), dtype=bool)
        shard_hashes = np.empty(len(ids), dtype=np.uint64)
        for i, (row_id, epoch) in enumerate(zip(ids, epochs, strict=True)):
            original = original_id(row_id, epoch)
            shard_hashes[i] = id_hash(original)
            if row_id in val_ids:
                found.add(row_id)
                is_val[i] = original not in val_originals
                val_originals.add(original)
        hashes.append(shard_hashes)
        lengths.append(pc.binary_length(table.column("text")).to_numpy(zero_copy_only=False))
        val_rows.append(is_val)
        sizes.append(len(ids))
    missing = val_ids - found
    pretrain_val = [id_hash(i) for i in sorted(val_originals | missing)]
    return ReplayIndex(
        rows=Rows.of(replay.shards, sizes),
        original_hash=np.concatenate([np.empty(0, np.uint64), *hashes]),
        text_bytes=np.concatenate([np.empty(0, np.int64), *lengths]).astype(np.int64),
        val_row=np.concatenate([np.empty(0, bool), *val_rows]),
        pretrain_val_hashes=np.asarray(pretrain_val, dtype=np.uint64),
        missing_val_ids=len(missing),
    )


@dataclass
class TargetIndex:
    rows: Rows
    domains: list[str]  # in shard order: the targets' names, sorted
    domain_of: np.ndarray  # int32: index into ``domains``
    id_hash: np.ndarray  # uint64
    heldout_key: np.ndarray  # float64 in [0, 1): seeded, decides the held-out share
    tokens: np.ndarray  # int64: exact, EOS included


def index_targets(
    storage: Storage, targets: dict[str, ShardManifest], tokenizer: Tokenizer, seed: int
) -> TargetIndex:
    """One pass over every target document: id hash, held-out key and exact tokens."""
    domains = sorted(targets)
    shards = [shard for d in domains for shard in targets[d].shards]
    domain_of, hashes, keys, tokens, sizes = [], [], [], [], []
    for number, domain in enumerate(domains):
        columns = ["id", "text", "domain"]
        for shard, table in iter_shard_tables(storage, targets[domain].shards, columns):
            others = set(table.column("domain").to_pylist()) - {domain}
            if others:
                raise ValueError(f"target {domain!r}: {shard.path} has domains {sorted(others)}")
            ids = table.column("id").to_pylist()
            domain_of.append(np.full(len(ids), number, dtype=np.int32))
            hashes.append(np.asarray([id_hash(i) for i in ids], dtype=np.uint64))
            keys.append(np.asarray([unit_hash(i, seed, "heldout") for i in ids]))
            tokens.append(count_tokens(tokenizer, table.column("text").to_pylist()))
            sizes.append(len(ids))
    return TargetIndex(
        rows=Rows.of(shards, sizes),
        domains=domains,
        domain_of=np.concatenate([np.empty(0, np.int32), *domain_of]),
        id_hash=np.concatenate([np.empty(0, np.uint64), *hashes]),
        heldout_key=np.concatenate([np.empty(0, np.float64), *keys]),
        tokens=np.concatenate([np.empty(0, np.int64), *tokens]),
    )
