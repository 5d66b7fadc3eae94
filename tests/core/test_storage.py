import pyarrow as pa
import pytest

from llmstack_dagster.core.schema import DOCUMENT_SCHEMA, documents_table, make_document
from llmstack_dagster.core.storage import (
    OutputVersion,
    ShardInfo,
    ShardManifest,
    ShardWriter,
    Storage,
    read_manifest,
    write_manifest,
    write_version,
)


def _doc(i: int, text: str | None = None) -> dict:
    from datetime import UTC, datetime

    return make_document(
        id=f"s/{i}",
        text=text or f"text {i}",
        domain="web",
        source="s",
        created=datetime(2020, 1, 1, tzinfo=UTC),
    )


def test_atomic_write_leaves_nothing_on_failure(storage: Storage) -> None:
    with pytest.raises(RuntimeError), storage.open_atomic("a/b.bin") as handle:
        handle.write(b"partial")
        raise RuntimeError("boom")
    assert not storage.exists("a/b.bin")
    assert storage.list("a") == []


def test_shard_writer_bounds_rows_and_round_trips(storage: Storage) -> None:
    writer = ShardWriter(storage, "x/shards", DOCUMENT_SCHEMA, max_rows=4)
    for i in range(10):
        writer.write_row(_doc(i))
    shards = writer.close()
    assert [s.rows for s in shards] == [4, 4, 2]
    ids = [i for s in shards for i in storage.read_table(s.path).column("id").to_pylist()]
    assert ids == [f"s/{i}" for i in range(10)]
    assert storage.read_table(shards[0].path).schema.equals(DOCUMENT_SCHEMA)


def test_write_table_splits_across_shards(storage: Storage) -> None:
    writer = ShardWriter(storage, "t", DOCUMENT_SCHEMA, max_rows=3)
    writer.write_table(documents_table([_doc(i) for i in range(7)]))
    assert [s.rows for s in writer.close()] == [3, 3, 1]


def test_memory_root_uses_the_same_code() -> None:
    store = Storage("memory://llmstack-test-root")
    store.rm("")
    writer = ShardWriter(store, "m/shards", DOCUMENT_SCHEMA, max_rows=2)
    for i in range(3):
        writer.write_row(_doc(i))
    manifest = ShardManifest(asset="m", partition="web", shards=writer.close())
    write_manifest(store, manifest)
    loaded = read_manifest(store, "m", "web")
    assert loaded.rows == 3
    assert store.url("m") == "memory://llmstack-test-root/m"
    assert isinstance(store.read_table(loaded.shards[0].path), pa.Table)


def test_missing_manifest_names_the_asset(storage: Storage) -> None:
    with pytest.raises(FileNotFoundError, match="raw_documents.*'web'"):
        read_manifest(storage, "raw_documents", "web")


def test_write_rows_ends_shards_where_write_row_does(storage: Storage) -> None:
    docs = [_doc(i, "word " * (i * 7 % 23 + 1)) for i in range(40)]
    one_by_one = ShardWriter(storage, "rows", DOCUMENT_SCHEMA, max_rows=9, max_bytes=300)
    for doc in docs:
        one_by_one.write_row(doc)
    tables = ShardWriter(storage, "tables", DOCUMENT_SCHEMA, max_rows=9, max_bytes=300)
    for start, stop in ((0, 1), (1, 13), (13, 14), (14, 40)):
        tables.write_rows(documents_table(docs[start:stop]))
    expected, got = one_by_one.close(), tables.close()
    assert len(expected) > 5 and [s.rows for s in got] == [s.rows for s in expected]
    assert [storage.read_bytes(s.path) for s in got] == [
        storage.read_bytes(s.path) for s in expected
    ]


def _commit_one(version: OutputVersion) -> ShardManifest:
    version.storage.write_bytes(version.path("out.bin"), b"done")
    shard = ShardInfo(path=version.path("out.bin"), rows=1, bytes=4)
    return version.commit(ShardManifest(asset="a", partition="p", shards=[shard]))


def test_only_the_same_key_finds_a_failed_version_again(storage: Storage) -> None:
    with pytest.raises(RuntimeError), write_version(storage, "a", "p", "cv", "other") as other:
        storage.write_bytes(other.path("part.bin"), b"half")
        raise RuntimeError("killed")
    with pytest.raises(RuntimeError), write_version(storage, "a", "p", "cv", "run-1") as first:
        storage.write_bytes(first.work("stage") + "/000000.pkl", b"record")
        storage.write_bytes(first.path("sub", ".tmp-1234-part.bin"), b"cut")  # a killed write
        raise RuntimeError("killed")
    assert storage.entries("a/p") == sorted([other.name, first.name])  # both kept
    assert OutputVersion(storage, "a", "p", "cv", "run-1").name == first.name
    assert OutputVersion(storage, "a", "p", "cv", "run-2").name not in (first.name, other.name)
    assert OutputVersion(storage, "a", "p", "cv2", "run-1").name != first.name
    with write_version(storage, "a", "p", "cv", "run-1") as again:
        assert again.folder == first.folder and storage.exists(again.work("stage"))
        committed = _commit_one(again)
    # the commit leaves only the manifest's files and sweeps the other key's folder
    assert storage.entries("a/p") == ["manifest.json", first.name]
    assert storage.entries(committed.folder) == ["out.bin", "sub"]
    assert storage.entries(committed.folder + "/sub") == []
    # the committed folder is never written again, even by its own key
    assert OutputVersion(storage, "a", "p", "cv", "run-1").name != first.name


def test_without_a_key_a_failed_version_is_removed(storage: Storage) -> None:
    with pytest.raises(RuntimeError), write_version(storage, "a", "p", "cv") as version:
        storage.write_bytes(version.work("stage") + "/000000.pkl", b"record")
        raise RuntimeError("killed")
    assert storage.entries("a/p") == []
