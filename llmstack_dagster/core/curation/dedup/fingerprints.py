"""Stage 1 runner: per-domain fingerprint shards (exact hash + MinHash bands) on disk."""

from __future__ import annotations

import logging
import posixpath
import time
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llmstack_dagster.core.curation.dedup.config import DedupConfig
from llmstack_dagster.core.curation.dedup.exact import exact_hash128
from llmstack_dagster.core.curation.dedup.minhash import MinHasher
from llmstack_dagster.core.progress import Progress
from llmstack_dagster.core.scale.resumable import map_resumable
from llmstack_dagster.core.scale.shard_map import ShardMap, local_or
from llmstack_dagster.core.schema import TIMESTAMP
from llmstack_dagster.core.storage import (
    ShardInfo,
    ShardManifest,
    Storage,
    build_version,
    content_version,
    work_dir,
)

ASSET = "document_fingerprints"
log = logging.getLogger(__name__)
CODE_VERSION = "1"


def band_column(band: int) -> str:
    return f"band_{band:03d}"


def fingerprint_schema(config: DedupConfig) -> pa.Schema:
    """id, domain, created, 128-bit exact hash, sizes, then one fixed-size column per band.

    Each band is its own column so that LSH reads one band of the whole corpus at a time.
    """
    band_type = pa.list_(pa.uint32(), config.rows_per_band)
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("domain", pa.string(), nullable=False),
            pa.field("created", TIMESTAMP, nullable=False),
            pa.field("hash_hi", pa.uint64(), nullable=False),
            pa.field("hash_lo", pa.uint64(), nullable=False),
            pa.field("text_bytes", pa.int64(), nullable=False),
            pa.field("num_shingles", pa.int32(), nullable=False),
        ]
        + [pa.field(band_column(b), band_type, nullable=False) for b in range(config.num_bands)]
    )


def fingerprint_batch(batch: pa.RecordBatch | pa.Table, domain: str, hasher: MinHasher) -> pa.Table:
    """Fingerprint rows for one batch of documents (columns id, text, created)."""
    config = hasher.config
    texts = batch.column("text")
    hashes = exact_hash128(texts)
    sig, counts = hasher.signatures_and_counts(texts)
    rows = config.rows_per_band
    bands = [
        pa.FixedSizeListArray.from_arrays(
            pa.array(np.ascontiguousarray(sig[:, b * rows : (b + 1) * rows]).ravel()), rows
        )
        for b in range(config.num_bands)
    ]
    n = len(texts)
    columns = [
        batch.column("id"),
        pa.array([domain] * n, pa.string()),
        batch.column("created"),
        pa.array(hashes[:, 0]),
        pa.array(hashes[:, 1]),
        pc.binary_length(texts).cast(pa.int64()),
        pa.array(counts),
        *bands,
    ]
    return pa.Table.from_arrays(columns, schema=fingerprint_schema(config))


def compute_fingerprints(
    storage: Storage,
    documents: ShardManifest,
    domain: str,
    config: DedupConfig,
    shard_map: ShardMap | None = None,
    resume_key: str | None = None,
) -> ShardManifest:
    """Write one fingerprint shard per document shard under ``document_fingerprints/{domain}``.

    Each document shard is one task on ``shard_map`` (inline on this machine by default). A
    task streams its shard in batches of ``config.batch_docs``; memory holds one shard's
    fingerprints (about 0.5 KB per document with 112 permutations) and one batch of text.
    A retry with the same ``resume_key`` runs only the shards not done yet (see
    :func:`~llmstack_dagster.core.storage.write_version`).
    """
    engine = local_or(shard_map)
    engine.require_shared_root(storage.root)
    version_id = content_version(
        ASSET, CODE_VERSION, config.signature_params(), [documents.content_version]
    )
    return build_version(
        storage, ASSET, domain, version_id,
        lambda v: _fingerprint_shards(storage, documents, domain, config, v.folder, engine),
        resume_key,
    )  # fmt: skip


def fingerprint_shard(
    storage: Storage, domain: str, config: DedupConfig, folder: str, job: tuple[int, ShardInfo]
) -> tuple[ShardInfo, int, int]:
    """One document shard's fingerprints as ``part-<index>``: (shard, text bytes, empty)."""
    index, shard = job
    hasher = MinHasher(config)
    parts = [
        fingerprint_batch(batch, domain, hasher)
        for batch in storage.iter_batches(
            shard.path, columns=["id", "text", "created"], batch_size=config.batch_docs
        )
    ]
    table = pa.concat_tables(parts) if parts else fingerprint_schema(config).empty_table()
    text_bytes = int(pc.sum(table["text_bytes"]).as_py() or 0)
    empty = int(pc.sum(pc.equal(table["num_shingles"], 0)).as_py() or 0)
    rel = posixpath.join(folder, f"part-{index:05d}.parquet")
    size = storage.write_table(rel, table)
    return ShardInfo(path=rel, rows=table.num_rows, bytes=size), text_bytes, empty


def _fingerprint_shards(
    storage: Storage,
    documents: ShardManifest,
    domain: str,
    config: DedupConfig,
    folder: str,
    engine: ShardMap,
) -> ShardManifest:
    progress = Progress(f"{ASSET}[{domain}]", documents.rows, log)
    started = time.perf_counter()
    results = map_resumable(
        engine, storage, work_dir(folder, "fingerprint"),
        partial(fingerprint_shard, storage, domain, config, folder),
        list(enumerate(documents.shards)),
        on_result=lambda result: progress.advance(result[0].rows),
    )  # fmt: skip
    shards = [shard for shard, _, _ in results]
    total_bytes = sum(text_bytes for _, text_bytes, _ in results)
    empty = sum(count for _, _, count in results)
    seconds = max(time.perf_counter() - started, 1e-9)
    n = sum(s.rows for s in shards)
    return ShardManifest(
        asset=ASSET,
        partition=domain,
        shards=shards,
        counts={"in": n, "fingerprinted": n, "without_shingles": empty},
        extra={
            "signature_params": config.signature_params(),
            "text_bytes": total_bytes,
            "docs_per_s": round(n / seconds, 1),
            "mb_per_s": round(total_bytes / seconds / 1e6, 2),
        },
    )
