"""Storage under one fsspec root: atomic writes, bounded Parquet shards, versioned outputs.

Every path goes through fsspec, so ``./data``, ``s3://bucket/prefix``, ``gs://...`` and
``memory://...`` behave the same. Writes go to a temporary name first and are renamed into
place, so a reader never sees a half-written file.

Each materialization of an asset partition writes into a fresh version folder
(``{asset}/{partition}/v-<utc time>-<random>/``) through :func:`write_version`. Its
:class:`ShardManifest` is then written to ``{asset}/{partition}/manifest.json`` in one atomic
step: that file is the partition's pointer, and readers only ever follow it. After the switch
the folders of older versions (the previous good one, leftovers of killed runs) are removed. A
run that fails or is killed before the switch leaves the previous version complete and
readable; its own folder is removed on failure, or swept by the next commit after a kill.

A run that passes a ``resume_key`` (in Dagster, the root run id that a run's retries share)
keeps its folder on failure, and a later attempt with the same key and content version writes
into the same folder again. Per-shard stages record each finished task under the folder's
``.work/`` (see :mod:`llmstack_dagster.core.scale.resumable`), so the retry runs only the
tasks that were not done. ``.work/`` is removed before the commit: a committed version holds
only its outputs. A run resumes only itself: other keys never see the folder, and the next
commit of any run sweeps it like any older version.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.core import url_to_fs
from pydantic import BaseModel, Field

DEFAULT_MAX_SHARD_ROWS = 50_000
DEFAULT_MAX_SHARD_BYTES = 128 * 1024 * 1024
MANIFEST_NAME = "manifest.json"
VERSION_PREFIX = "v-"
TMP_PREFIX = ".tmp-"
WORK_DIR = ".work"  # per-task completion records and intermediate files of a version


class StorageError(RuntimeError):
    """A storage operation failed; the message names the full path (and the asset, if known)."""

    def __init__(self, message: str, asset: str | None = None) -> None:
        super().__init__(message)
        self.asset = asset


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

    def entries(self, rel: str) -> list[str]:
        """Names of the files and folders directly under ``rel``, sorted."""
        if not self.fs.exists(self._abs(rel)):
            return []
        return sorted(
            posixpath.basename(p.rstrip("/"))
            for p in self.fs.ls(self._abs(rel).rstrip("/"), detail=False)
        )

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
        tmp = posixpath.join(parent, f"{TMP_PREFIX}{uuid.uuid4().hex}-{posixpath.basename(target)}")
        try:
            self.fs.makedirs(parent, exist_ok=True)
            with self.fs.open(tmp, "wb") as handle:
                yield handle
            self.fs.mv(tmp, target)
        except BaseException as err:
            self._remove_quietly(tmp)
            if isinstance(err, OSError):
                raise StorageError(f"cannot write {self.url(rel)}: {err.strerror or err}") from err
            raise

    def remove_temporary(self, rel: str) -> None:
        """Remove the temporary files of interrupted atomic writes anywhere under ``rel``."""
        for path in self.fs.find(self._abs(rel)):
            if posixpath.basename(path).startswith(TMP_PREFIX):
                self.fs.rm(path)

    def _remove_quietly(self, path: str) -> None:
        """Best-effort removal (cleanup after a failure must not hide the failure)."""
        try:
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)
        except OSError:
            pass

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
        local = self.local_path(rel)
        if local is not None:  # by path: pyarrow's own reader, no Python file object
            return pq.read_table(local, columns=columns)
        with self.fs.open(self._abs(rel), "rb") as handle:
            # pre_buffer=False: pre-buffering through a Python file object can abort the
            # process at exit (apache/arrow#34314)
            return pq.read_table(handle, columns=columns, pre_buffer=False)

    def iter_batches(
        self, rel: str, columns: list[str] | None = None, batch_size: int = 8192
    ) -> Iterator[pa.RecordBatch]:
        """Stream a Parquet file batch by batch."""
        local = self.local_path(rel)
        if local is not None:
            yield from pq.ParquetFile(local).iter_batches(batch_size=batch_size, columns=columns)
            return
        with self.fs.open(self._abs(rel), "rb") as handle:
            parquet = pq.ParquetFile(handle, pre_buffer=False)
            yield from parquet.iter_batches(batch_size=batch_size, columns=columns)

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
    version: str | None = None
    content_version: str | None = None
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

    @property
    def folder(self) -> str:
        """The committed version's folder, relative to the storage root."""
        if self.version is None:
            raise ValueError(f"manifest of {self.asset!r} {self.partition!r} has no version")
        return posixpath.join(partition_dir(self.asset, self.partition), self.version)


def partition_dir(asset: str, partition: str | None) -> str:
    """The folder of an asset partition under the storage root."""
    return posixpath.join(asset, partition) if partition else asset


def content_version(
    asset: str, code_version: str, config: Any, inputs: Iterable[str | None] = ()
) -> str:
    """A hash of what an output depends on: its inputs' versions, its config and code version.

    Later stages carry it (an input's ``content_version`` is one of their inputs), so a
    checkpoint names the exact data it was trained on.
    """
    if isinstance(config, BaseModel):
        config = config.model_dump(mode="json")
    payload = {"asset": asset, "code": code_version, "config": config, "inputs": list(inputs)}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def unchanged_output(
    storage: Storage, asset: str, partition: str | None, content_version: str
) -> ShardManifest | None:
    """The committed output when it was built from the same inputs, config and code (so
    rebuilding would give the same data), else None. Stages return it instead of rewriting."""
    current = current_manifest(storage, asset, partition)
    return current if current and current.content_version == content_version else None


def write_manifest(storage: Storage, manifest: ShardManifest) -> str:
    """Write (switch) a partition's pointer atomically; use :func:`write_version` to commit."""
    rel = posixpath.join(partition_dir(manifest.asset, manifest.partition), MANIFEST_NAME)
    storage.write_json(rel, manifest.model_dump())
    return rel


def current_manifest(storage: Storage, asset: str, partition: str | None) -> ShardManifest | None:
    """The manifest the partition's pointer holds now, or None before the first commit."""
    rel = posixpath.join(partition_dir(asset, partition), MANIFEST_NAME)
    if not storage.exists(rel):
        return None
    return ShardManifest.model_validate(storage.read_json(rel))


def read_manifest(storage: Storage, asset: str, partition: str | None) -> ShardManifest:
    manifest = current_manifest(storage, asset, partition)
    if manifest is None:
        rel = posixpath.join(partition_dir(asset, partition), MANIFEST_NAME)
        raise FileNotFoundError(
            f"no manifest for asset {asset!r} partition {partition!r} at {storage.url(rel)}; "
            "materialize it first"
        )
    return manifest


def new_version_name(suffix: str | None = None) -> str:
    """``v-<UTC time>-<suffix or random>``: versions sort by the time their run started."""
    return f"{VERSION_PREFIX}{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{suffix or uuid.uuid4().hex[:8]}"


def work_dir(folder: str, stage: str) -> str:
    """The work folder of one per-shard stage of the version in ``folder``."""
    return posixpath.join(folder, WORK_DIR, stage)


def resume_suffix(content_version: str | None, resume_key: str) -> str:
    """The name ending of the version that ``resume_key`` writes with this content version."""
    return "r" + hashlib.sha256(f"{content_version}\0{resume_key}".encode()).hexdigest()[:15]


def resumable_version_name(
    storage: Storage, asset: str, partition: str | None, content_version: str | None, key: str
) -> str:
    """The folder an earlier attempt with this key and content version left (never the
    committed one, which readers may be reading), else a new name for it."""
    suffix = resume_suffix(content_version, key)
    current = current_manifest(storage, asset, partition)
    committed = current.version if current else None
    left = [
        name
        for name in storage.entries(partition_dir(asset, partition))
        if name.startswith(VERSION_PREFIX) and name.endswith(f"-{suffix}") and name != committed
    ]
    return max(left) if left else new_version_name(suffix)


class OutputVersion:
    """The version of one asset partition that a run is writing; see :func:`write_version`.

    With a ``resume_key``, the folder is the one an earlier attempt with the same key and
    content version left, if any (its finished tasks are not run again)."""

    def __init__(
        self,
        storage: Storage,
        asset: str,
        partition: str | None,
        content_version: str | None,
        resume_key: str | None = None,
    ) -> None:
        self.storage = storage
        self.asset = asset
        self.partition = partition
        self.content_version = content_version
        self.resume_key = resume_key
        self.name = (
            new_version_name()
            if resume_key is None
            else resumable_version_name(storage, asset, partition, content_version, resume_key)
        )
        self.folder = posixpath.join(partition_dir(asset, partition), self.name)
        self.committed: ShardManifest | None = None

    def path(self, *parts: str) -> str:
        """A path inside this version's folder, relative to the storage root."""
        return posixpath.join(self.folder, *parts)

    def work(self, stage: str) -> str:
        """The folder of one per-shard stage's completion records (removed on commit)."""
        return work_dir(self.folder, stage)

    def commit(self, manifest: ShardManifest) -> ShardManifest:
        """Switch the partition's pointer to this version, then remove older versions."""
        if (manifest.asset, manifest.partition) != (self.asset, self.partition):
            raise ValueError(
                f"manifest of {manifest.asset!r} {manifest.partition!r} committed to version "
                f"of {self.asset!r} {self.partition!r}"
            )
        work = self.path(WORK_DIR) + "/"
        outside = [
            s.path
            for s in [*manifest.shards, *manifest.drops]
            if not s.path.startswith(self.folder + "/")
            or s.path.startswith(work)
            or not self.storage.exists(s.path)
        ]
        if outside:
            raise StorageError(
                f"asset {self.asset!r} partition {self.partition!r}: cannot commit version "
                f"{self.name}: {len(outside)} listed file(s) missing or outside "
                f"{self.storage.url(self.folder)}, e.g. {outside[0]}",
                asset=self.asset,
            )
        committed = manifest.model_copy(
            update={"version": self.name, "content_version": self.content_version}
        )
        self.storage.rm(self.path(WORK_DIR))
        if self.resume_key is not None:  # writes an earlier attempt's kill cut short
            self.storage.remove_temporary(self.folder)
        write_manifest(self.storage, committed)
        self.committed = committed
        sweep_partition(self.storage, self.asset, self.partition, self.name)
        return committed

    def discard(self) -> None:
        self.storage._remove_quietly(self.storage._abs(self.folder))


def sweep_partition(storage: Storage, asset: str, partition: str | None, current: str) -> None:
    """Remove what no reader can reach: versions older than ``current``, temporary files and
    anything else in the partition folder but the pointer (e.g. an older, unversioned layout).

    Versions newer than ``current`` belong to runs still in progress and are left alone.
    """
    base = partition_dir(asset, partition)
    for name in storage.entries(base):
        if name == MANIFEST_NAME or (name.startswith(VERSION_PREFIX) and name >= current):
            continue
        storage.rm(posixpath.join(base, name))


@contextmanager
def write_version(
    storage: Storage,
    asset: str,
    partition: str | None,
    content_version: str | None = None,
    resume_key: str | None = None,
) -> Iterator[OutputVersion]:
    """Write a new version of an asset partition; the body must call ``version.commit``.

    On any failure the previous version stays the one readers see, the new folder is removed
    (kept for the next attempt when there is a ``resume_key``), and storage errors are
    re-raised naming the asset, partition and path.
    """
    version = OutputVersion(storage, asset, partition, content_version, resume_key)
    try:
        yield version
    except BaseException as err:
        if resume_key is None:
            version.discard()
        if isinstance(err, OSError) or (isinstance(err, StorageError) and err.asset is None):
            message = f"asset {asset!r} partition {partition!r}: {err}"
            raise StorageError(message, asset=asset) from err
        raise
    if version.committed is None:
        version.discard()
        raise RuntimeError(f"asset {asset!r} partition {partition!r}: version not committed")


def build_version(
    storage: Storage,
    asset: str,
    partition: str | None,
    content_version: str,
    build: Callable[[OutputVersion], ShardManifest],
    resume_key: str | None = None,
) -> ShardManifest:
    """The committed output if it has this content version already (nothing is rewritten);
    otherwise ``build`` writes a new version's files and returns its manifest, committed here
    (``resume_key``: see :func:`write_version`)."""
    same = unchanged_output(storage, asset, partition, content_version)
    if same is not None:
        return same
    with write_version(storage, asset, partition, content_version, resume_key) as version:
        return version.commit(build(version))


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

    def write_rows(self, table: pa.Table) -> None:
        """Append a table's rows where :meth:`write_row` would put them one by one: a row's
        size is the length of its strings, so the shards end after the same rows."""
        table = table.select(self.schema.names).cast(self.schema)
        sizes = np.zeros(table.num_rows, dtype=np.int64)
        for column in table.columns:
            if pa.types.is_string(column.type):
                sizes += pc.fill_null(pc.utf8_length(column), 0).to_numpy()
        offset = 0
        while offset < table.num_rows:
            room = self.max_rows - self._buffered_rows
            total = self._buffered_bytes + np.cumsum(sizes[offset : offset + room])
            full = np.nonzero(total >= self.max_bytes)[0]
            take = int(full[0]) + 1 if len(full) else len(total)
            self._stage_rows()
            self._batches.append(table.slice(offset, take))
            self._buffered_rows += take
            self._buffered_bytes = int(total[take - 1])
            offset += take
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
        # one chunk: the Parquet bytes do not depend on how the rows arrived
        table = pa.concat_tables(self._batches).combine_chunks()
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
