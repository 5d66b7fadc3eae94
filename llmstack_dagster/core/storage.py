"""Storage under one fsspec root: atomic writes, bounded Parquet shards, manifests.

Every path goes through fsspec, so ``./data``, ``s3://bucket/prefix``, ``gs://...`` and
``memory://...`` behave the same. Writes go to a temporary name first and are renamed into
place, so a reader never sees a half-written file. A stage's output is described by a
:class:`ShardManifest` written last: shards not named by the manifest do not exist for readers.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs
from pydantic import BaseModel, Field

DEFAULT_MAX_SHARD_ROWS = 50_000
DEFAULT_MAX_SHARD_BYTES = 128 * 1024 * 1024
MANIFEST_NAME = "manifest.json"


class Storage:
    """A storage root addressed by an fsspec URL; all paths are relative to it."""

    def __init__(self, root: str, **storage_options: Any) -> None:
        self.root = root.rstrip("/") or root
        self.fs: fsspec.AbstractFileSystem
        self.fs, self._base = url_to_fs(self.root, **storage_options)

    def url(self, *parts: str) -> str:
        """Full URL of a relative path (for humans and metadata)."""
        return posixpath.join(self.root, *parts)

    def _abs(self, rel: str) -> str:
        return posixpath.join(self._base, rel)

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self._abs(rel))

    def size(self, rel: str) -> int:
        return int(self.fs.size(self._abs(rel)))

    def rm(self, rel: str) -> None:
        """Remove a file or a folder, if it exists."""
        if self.fs.exists(self._abs(rel)):
            self.fs.rm(self._abs(rel), recursive=True)

    def list(self, rel: str, suffix: str = "") -> list[str]:
        """Relative paths of the files directly under ``rel``, sorted."""
        if not self.fs.exists(self._abs(rel)):
            return []
        base = self._abs(rel).rstrip("/")
        out = []
        for path in self.fs.ls(base, detail=False):
            name = posixpath.basename(path.rstrip("/"))
            if name.endswith(suffix) and not self.fs.isdir(path):
                out.append(posixpath.join(rel, name))
        return sorted(out)

    @contextmanager
    def open_atomic(self, rel: str) -> Iterator[io.BufferedIOBase]:
        """Open ``rel`` for binary writing; it appears under its name only on success."""
        target = self._abs(rel)
        parent = posixpath.dirname(target)
        self.fs.makedirs(parent, exist_ok=True)
        tmp = posixpath.join(parent, f".tmp-{uuid.uuid4().hex}-{posixpath.basename(target)}")
        try:
            with self.fs.open(tmp, "wb") as handle:
                yield handle
            self.fs.mv(tmp, target)
        except BaseException:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)
            raise

    def write_bytes(self, rel: str, data: bytes) -> None:
        with self.open_atomic(rel) as handle:
            handle.write(data)

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open(self._abs(rel), "rb") as handle:
            return handle.read()

    def write_json(self, rel: str, obj: Any) -> None:
        self.write_bytes(rel, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())

    def read_json(self, rel: str) -> Any:
        return json.loads(self.read_bytes(rel))

    def write_table(self, rel: str, table: pa.Table) -> int:
        """Write one Parquet file atomically; returns its size in bytes."""
        with self.open_atomic(rel) as handle:
            pq.write_table(table, handle, compression="zstd")
        return self.size(rel)

    def read_table(self, rel: str, columns: list[str] | None = None) -> pa.Table:
        with self.fs.open(self._abs(rel), "rb") as handle:
            return pq.read_table(handle, columns=columns)

    def iter_batches(
        self, rel: str, columns: list[str] | None = None, batch_size: int = 8192
    ) -> Iterator[pa.RecordBatch]:
        """Stream a Parquet file batch by batch."""
        with self.fs.open(self._abs(rel), "rb") as handle:
            yield from pq.ParquetFile(handle).iter_batches(batch_size=batch_size, columns=columns)

    def download_dir(self, rel: str, dest: str) -> str:
        """Copy the folder ``rel`` to the local folder ``dest``; returns ``dest``."""
        os.makedirs(dest, exist_ok=True)
        self.fs.get(self._abs(rel).rstrip("/") + "/", dest.rstrip("/") + "/", recursive=True)
        return dest

    def upload_dir(self, local: str, rel: str) -> None:
        """Copy the local folder ``local`` to ``rel`` under the root."""
        self.fs.put(local.rstrip("/") + "/", self._abs(rel).rstrip("/") + "/", recursive=True)

    def local_path(self, rel: str) -> str | None:
        """The local filesystem path of ``rel`` when the root is on local disk, else None."""
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return self._abs(rel) if protocol in ("file", "local") else None


class ShardInfo(BaseModel):
    path: str
    rows: int
    bytes: int


class ShardManifest(BaseModel):
    """What one materialization of one asset partition wrote."""

    asset: str
    partition: str | None = None
    shards: list[ShardInfo] = Field(default_factory=list)
    drops: list[ShardInfo] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)

    @property
    def dropped(self) -> int:
        return sum(s.rows for s in self.drops)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.shards)


def partition_dir(asset: str, partition: str | None) -> str:
    """The folder of an asset partition under the storage root."""
    return posixpath.join(asset, partition) if partition else asset


def write_manifest(storage: Storage, manifest: ShardManifest) -> str:
    rel = posixpath.join(partition_dir(manifest.asset, manifest.partition), MANIFEST_NAME)
    storage.write_json(rel, manifest.model_dump())
    return rel


def read_manifest(storage: Storage, asset: str, partition: str | None) -> ShardManifest:
    rel = posixpath.join(partition_dir(asset, partition), MANIFEST_NAME)
    if not storage.exists(rel):
        raise FileNotFoundError(
            f"no manifest for asset {asset!r} partition {partition!r} at {storage.url(rel)}; "
            "materialize it first"
        )
    return ShardManifest.model_validate(storage.read_json(rel))


class ShardWriter:
    """Buffers rows and writes bounded, atomically renamed Parquet shards into one folder.

    A shard is closed when it reaches ``max_rows`` rows or about ``max_bytes`` bytes of
    Arrow data, so memory stays bounded by one shard whatever the corpus size.
    """

    def __init__(
        self,
        storage: Storage,
        folder: str,
        schema: pa.Schema,
        prefix: str = "part",
        max_rows: int = DEFAULT_MAX_SHARD_ROWS,
        max_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    ) -> None:
        self.storage = storage
        self.folder = folder
        self.schema = schema
        self.prefix = prefix
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.shards: list[ShardInfo] = []
        self._rows: list[dict[str, Any]] = []
        self._batches: list[pa.Table] = []
        self._buffered_rows = 0
        self._buffered_bytes = 0

    def write_row(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        self._buffered_rows += 1
        self._buffered_bytes += sum(len(v) for v in row.values() if isinstance(v, str))
        if len(self._rows) >= 1024:
            self._stage_rows()
        self._maybe_flush()

    def write_table(self, table: pa.Table) -> None:
        """Append a table (cast to the writer's schema), splitting across shards as needed."""
        table = table.select(self.schema.names).cast(self.schema)
        offset = 0
        while offset < table.num_rows:
            room = self.max_rows - self._buffered_rows
            piece = table.slice(offset, room)
            self._stage_rows()
            self._batches.append(piece)
            self._buffered_rows += piece.num_rows
            self._buffered_bytes += piece.nbytes
            offset += piece.num_rows
            self._maybe_flush()

    def _stage_rows(self) -> None:
        if self._rows:
            self._batches.append(pa.Table.from_pylist(self._rows, schema=self.schema))
            self._rows = []

    def _maybe_flush(self) -> None:
        if self._buffered_rows >= self.max_rows or self._buffered_bytes >= self.max_bytes:
            self.flush()

    def flush(self) -> None:
        """Write what is buffered as one shard (no-op when empty)."""
        self._stage_rows()
        if not self._batches:
            return
        table = pa.concat_tables(self._batches)
        rel = posixpath.join(self.folder, f"{self.prefix}-{len(self.shards):05d}.parquet")
        size = self.storage.write_table(rel, table)
        self.shards.append(ShardInfo(path=rel, rows=table.num_rows, bytes=size))
        self._batches = []
        self._buffered_rows = 0
        self._buffered_bytes = 0

    def close(self) -> list[ShardInfo]:
        self.flush()
        return self.shards


def iter_shard_tables(
    storage: Storage, shards: list[ShardInfo], columns: list[str] | None = None
) -> Iterator[tuple[ShardInfo, pa.Table]]:
    """Read shards one at a time, so memory holds a single shard."""
    for shard in shards:
        yield shard, storage.read_table(shard.path, columns=columns)
