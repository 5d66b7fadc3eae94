"""Versioned outputs: a failed run leaves the previous version, a commit sweeps the old ones."""

from __future__ import annotations

import posixpath

import pytest
from support.documents import documents

from llmstack_dagster.core.schema import DOCUMENT_SCHEMA
from llmstack_dagster.core.storage import (
    ShardManifest,
    ShardWriter,
    Storage,
    StorageError,
    read_manifest,
    write_version,
)


def _commit(storage: Storage, n: int, prefix: str = "d") -> ShardManifest:
    with write_version(storage, "asset", "web", content_version=f"cv-{n}") as version:
        writer = ShardWriter(storage, version.path("shards"), DOCUMENT_SCHEMA, max_rows=3)
        for doc in documents(n, prefix):
            writer.write_row(doc)
        manifest = ShardManifest(asset="asset", partition="web", shards=writer.close())
        return version.commit(manifest)


def test_commit_switches_the_pointer_and_removes_the_old_version(storage: Storage) -> None:
    first = _commit(storage, 7)
    second = _commit(storage, 2, prefix="e")
    assert read_manifest(storage, "asset", "web") == second
    assert second.content_version == "cv-2" and second.version > first.version
    assert storage.entries("asset/web") == ["manifest.json", second.version]
    ids = [i for s in second.shards for i in storage.read_table(s.path)["id"].to_pylist()]
    assert ids == ["e/0", "e/1"]


def test_a_failed_run_leaves_the_previous_version_readable(storage: Storage) -> None:
    first = _commit(storage, 5)
    with pytest.raises(RuntimeError, match="boom"), write_version(storage, "asset", "web") as v:
        writer = ShardWriter(storage, v.path("shards"), DOCUMENT_SCHEMA, max_rows=1)
        for doc in documents(3, "x"):
            writer.write_row(doc)
        raise RuntimeError("boom")
    assert read_manifest(storage, "asset", "web") == first
    assert storage.entries("asset/web") == ["manifest.json", first.version]
    assert sum(storage.read_table(s.path).num_rows for s in first.shards) == 5


def test_a_body_that_never_commits_is_an_error(storage: Storage) -> None:
    with pytest.raises(RuntimeError, match="not committed"), write_version(storage, "a", "p"):
        pass
    assert storage.entries("a/p") == []


def test_commit_refuses_files_outside_the_version(storage: Storage) -> None:
    storage.write_bytes("elsewhere/x.parquet", b"x")
    outside = "asset 'asset' partition 'web'.*outside"
    with pytest.raises(StorageError, match=outside), write_version(storage, "asset", "web") as v:
        manifest = ShardManifest(asset="asset", partition="web")
        manifest.shards.append(_info("elsewhere/x.parquet"))
        v.commit(manifest)
    assert not storage.exists("asset/web/manifest.json")


def test_commit_sweeps_dead_runs_and_an_old_layout_but_not_newer_runs(storage: Storage) -> None:
    storage.write_bytes("asset/web/part-00000.parquet", b"old layout")
    storage.write_bytes("asset/web/v-00000000T000000000000Z-dead0000/shards/p.parquet", b"x")
    storage.write_bytes("asset/web/.tmp-1234-manifest.json", b"{")
    storage.write_bytes("asset/web/v-99991231T000000000000Z-live0000/shards/p.parquet", b"x")
    committed = _commit(storage, 1)
    assert storage.entries("asset/web") == [
        "manifest.json",
        committed.version,
        "v-99991231T000000000000Z-live0000",
    ]


def test_storage_errors_name_the_asset_and_the_path(storage: Storage, tmp_path) -> None:
    with pytest.raises(StorageError) as err, write_version(storage, "asset", "web") as version:
        blocker = version.path("shards")
        storage.write_bytes(blocker, b"a file where a folder must go")
        storage.write_bytes(posixpath.join(blocker, "part.parquet"), b"x")
    message = str(err.value)
    assert "asset 'asset' partition 'web'" in message
    assert storage.url(version.folder) in message


def _info(path: str):
    from llmstack_dagster.core.storage import ShardInfo

    return ShardInfo(path=path, rows=1, bytes=1)
