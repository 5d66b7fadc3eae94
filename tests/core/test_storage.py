import pyarrow as pa
import pytest

from llmstack_dagster.core.schema import DOCUMENT_SCHEMA, documents_table, make_document
from llmstack_dagster.core.storage import (
    ShardManifest,
    ShardWriter,
    Storage,
    read_manifest,
    write_manifest,
)


def _doc(i: int) -> dict:
    from datetime import UTC, datetime

    return make_document(
        id=f"s/{i}",
        text=f"text {i}",
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
