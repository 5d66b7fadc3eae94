"""Ingestion of real files in every supported format, exact quarantine accounting, files as
engine tasks (any worker count, caps included) and retries that resume."""

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from support.resume import FailOnce

from llmstack_dagster.core.curation import ingest as ingest_module
from llmstack_dagster.core.curation.ingest import ingest_domain
from llmstack_dagster.core.curation.readers import SourceError
from llmstack_dagster.core.curation.sources import DomainConfig
from llmstack_dagster.core.scale.shard_map import LocalShardMap
from llmstack_dagster.core.schema import DOCUMENT_SCHEMA
from llmstack_dagster.core.storage import Storage, iter_shard_tables, read_manifest


def ingest(storage: Storage, *sources: dict, domain: str = "web"):
    manifest = ingest_domain(storage, domain, DomainConfig.model_validate({"sources": sources}))
    docs = [r for _, t in iter_shard_tables(storage, manifest.shards) for r in t.to_pylist()]
    drops = [r for _, t in iter_shard_tables(storage, manifest.drops) for r in t.to_pylist()]
    assert manifest.counts["read"] == manifest.counts["written"] + manifest.counts["quarantined"]
    assert len(docs) == manifest.counts["written"] and len(drops) == manifest.counts["quarantined"]
    return manifest, docs, drops


def test_ccnet_jsonl_maps_fields_and_provenance(storage, shared_data: Path) -> None:
    path = shared_data / "pretrain/web/cc_en_head-0091.jsonl"
    manifest, docs, drops = ingest(
        storage,
        {
            "name": "ccnet",
            "kind": "jsonl",
            "paths": [str(path)],
            "fields": {
                "text": "text",
                "id": "id",
                "url": "id",
                "created": "created",
                "language": "metadata.language",
            },
        },
    )
    assert len(docs) == sum(1 for _ in path.open()) and not drops
    with path.open() as handle:
        first = json.loads(handle.readline())
    doc = docs[0]
    assert doc["id"] == f"ccnet/{first['id']}" and doc["url"] == first["id"]
    assert doc["text"] == first["text"] and doc["language"] == "en"
    assert doc["created"].isoformat().startswith(first["created"][:19])
    meta = json.loads(doc["metadata"])
    assert meta["metadata"]["bucket"] == first["metadata"]["bucket"]
    assert meta["provenance"] == {
        "source": "ccnet",
        "kind": "jsonl",
        "uri": str(path),
        "locator": "line:1",
    }
    assert "text" not in meta
    assert manifest.extra["created_min"] <= manifest.extra["created_max"]


def test_nested_filter_and_max_docs_and_date_window(storage, shared_data: Path) -> None:
    pile = str(shared_data / "pretrain/mixed/pile_sample.jsonl")
    _, docs, _ = ingest(
        storage,
        {
            "name": "pile_gh",
            "kind": "jsonl",
            "paths": [pile],
            "fields": {"text": "contents"},
            "filter": {"field": "metadata.pile_set_name", "values": ["Github"]},
            "max_docs": 10,
        },
    )
    assert len(docs) == 10
    assert all(json.loads(d["metadata"])["metadata"]["pile_set_name"] == "Github" for d in docs)
    manifest, docs, drops = ingest(
        storage,
        {
            "name": "pile",
            "kind": "jsonl",
            "paths": [pile],
            "fields": {"text": "contents"},
            "max_docs": 20,
            "default_created": "2020-12-31T00:00:00Z",
            "created_before": "2019-01-01T00:00:00Z",
        },
    )
    assert not docs and len(drops) == 20
    assert {d["reason"] for d in drops} == {"outside_date_window"}


def test_compressed_jsonl_gz_and_zst(storage, shared_data: Path, tmp_path: Path) -> None:
    gz = shared_data / "preference/hh_rlhf_harmless.jsonl.gz"
    _, docs, drops = ingest(
        storage,
        {
            "name": "hh",
            "kind": "jsonl",
            "paths": [str(gz)],
            "fields": {"text": "chosen", "id": None},
            "max_docs": 50,
        },
    )
    assert len(docs) == 50 and not drops
    assert all(d["id"].startswith("hh/sha1:") for d in docs)
    raw = (shared_data / "pretrain/news/xsum.jsonl").read_bytes()
    zst = tmp_path / "xsum.jsonl.zst"
    zst.write_bytes(zstandard.ZstdCompressor().compress(raw))
    _, docs, _ = ingest(storage, {"name": "xsum", "kind": "jsonl", "paths": [str(zst)]})
    assert len(docs) == raw.count(b"\n")


def test_parquet_text_dir_and_warc(storage, shared_data: Path, tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (shared_data / "pretrain/code/code_sample.jsonl").open()]
    pq.write_table(pa.Table.from_pylist(rows[:40]), tmp_path / "code.parquet")
    _, docs, _ = ingest(
        storage,
        {
            "name": "code",
            "kind": "parquet",
            "paths": [str(tmp_path / "*.parquet")],
            "fields": {"text": "text", "language": "language"},
        },
        domain="code",
    )
    assert len(docs) == 40 and {d["language"] for d in docs} <= {"python", "c", "javascript"}

    _, docs, _ = ingest(
        storage,
        {
            "name": "gut",
            "kind": "text_dir",
            "path": str(shared_data / "pretrain/books"),
            "pattern": "*.txt",
        },
        domain="books",
    )
    assert len(docs) == 12 and "gut/hamlet_gut.txt" in {d["id"] for d in docs}

    manifest, docs, drops = ingest(
        storage,
        {
            "name": "warc",
            "kind": "warc",
            "paths": [str(shared_data / "pretrain/web/warc/sample-0000.warc.gz")],
        },
    )
    assert len(docs) >= 10
    assert all(d["url"].startswith("http") and len(d["text"]) > 0 for d in docs)
    assert all(d["id"].startswith("warc/urn:uuid:") for d in docs)
    assert all(d["created"].year == 2024 for d in docs)
    assert "<html" not in docs[0]["text"].lower()


def test_huggingface_streaming_field_mapping_on_a_local_dataset(storage, shared_data) -> None:
    path = str(shared_data / "pretrain/code/code_sample.jsonl")
    _, docs, _ = ingest(
        storage,
        {
            "name": "hf_code",
            "kind": "huggingface",
            "dataset": "json",
            "data_files": [path],
            "fields": {"text": "text", "id": "id", "language": "language"},
            "max_docs": 25,
        },
        domain="code",
    )
    with open(path) as handle:
        first = json.loads(handle.readline())
    assert len(docs) == 25 and docs[0]["id"] == f"hf_code/{first['id']}"
    assert docs[0]["language"] == first["language"]


def test_unreachable_hub_and_missing_file_name_the_source(storage, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(SourceError, match="source 'c4_web'.*allenai/c4"):
        ingest(
            storage,
            {"name": "c4_web", "kind": "huggingface", "dataset": "allenai/c4", "config_name": "en"},
        )
    with pytest.raises(SourceError, match="source 'gone'.*not found"):
        ingest(storage, {"name": "gone", "kind": "jsonl", "paths": ["/nonexistent/x.jsonl"]})


def test_bad_input_gives_exact_quarantine_counts(storage, tmp_path: Path) -> None:
    good = [json.dumps({"id": f"g{i}", "text": f"good document {i}"}).encode() for i in range(5)]
    lines = [
        *good,
        b'{"id": "m1", "text": "unterminated',  # malformed JSON
        b"[1, 2, 3]",  # JSON but not an object
        b'{"id": "u1", "text": "bad \xff\xfe bytes"}',  # invalid UTF-8
        b'{"id": "s1", "text": "lone \\ud800 surrogate"}',  # decodes, cannot encode as UTF-8
        b'{"id": "n1", "body": "no text field"}',  # missing text
        b'{"id": "e1", "text": "   "}',  # empty text
        b'{"id": "big", "text": "' + b"x" * 300 + b'"}',  # over the size limit
        json.dumps({"id": "g0", "text": "same id again"}).encode(),  # duplicate id
        json.dumps({"id": "g1", "text": "and again"}).encode(),  # duplicate id
        json.dumps({"id": "t1", "text": "bad time", "ts": "yesterday"}).encode(),
    ]
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\n".join(lines) + b"\n")
    many = [
        json.dumps({"id": i, "text": f"line {i} " * (i % 17 + 1)}).encode() for i in range(5000)
    ]
    full = gzip.compress(b"\n".join(many) + b"\n")
    (tmp_path / "trunc.jsonl.gz").write_bytes(full[: len(full) // 2])
    manifest, docs, drops = ingest(
        storage,
        {
            "name": "bad",
            "kind": "jsonl",
            "paths": [str(bad)],
            "max_doc_bytes": 200,
            "fields": {"text": "text", "id": "id", "created": "ts"},
        },
        {"name": "trunc", "kind": "jsonl", "paths": [str(tmp_path / "trunc.jsonl.gz")]},
    )
    reasons = manifest.extra["quarantine_reasons"]
    assert reasons == {
        "malformed_json": 2,
        "invalid_utf8": 2,
        "missing_text": 1,
        "empty_text": 1,
        "oversize": 1,
        "duplicate_id": 2,
        "invalid_created": 1,
        "truncated_gzip": 1,
    }
    bad_counts = manifest.extra["per_source"]["bad"]
    assert {k: bad_counts[k] for k in ("read", "written", "quarantined", "skipped_by_filter")} == {
        "read": 15,
        "written": 5,
        "quarantined": 10,
        "skipped_by_filter": 0,
    }
    assert bad_counts["quarantined:duplicate_id"] == 2
    trunc = manifest.extra["per_source"]["trunc"]
    assert trunc["quarantined"] == 1 and 100 < trunc["written"] < 5000
    (cut,) = [d for d in drops if d["reason"] == "truncated_gzip"]
    assert cut["locator"].endswith(f"after-line:{trunc['written']}")
    assert all(d["stage"] == "raw_documents" and d["locator"] for d in drops)
    assert {d["id"] for d in drops if d["reason"] == "duplicate_id"} == {"bad/g0", "bad/g1"}


def test_rematerializing_is_idempotent_and_deterministic(storage, shared_data, tmp_path) -> None:
    src = {
        "name": "news",
        "kind": "jsonl",
        "paths": [str(shared_data / "pretrain/news/cnn_dailymail.jsonl")],
    }
    config = DomainConfig.model_validate({"sources": [src]})
    first = ingest_domain(storage, "news", config, max_shard_rows=64)
    tables = [storage.read_bytes(s.path) for s in first.shards]
    # unchanged sources and settings: the committed version is the answer, nothing rewritten
    again = ingest_domain(storage, "news", config, max_shard_rows=64)
    assert again == first and read_manifest(storage, "raw_documents", "news") == first
    # from scratch elsewhere: the same bytes under another version
    other = Storage(str(tmp_path / "other"))
    second = ingest_domain(other, "news", config, max_shard_rows=64)
    assert [other.read_bytes(s.path) for s in second.shards] == tables
    assert len(first.shards) == 4 and other.list(f"{second.folder}/shards") == [
        s.path for s in second.shards
    ]
    assert second.version != first.version
    assert second.content_version == first.content_version
    assert storage.entries("raw_documents/news") == ["manifest.json", first.version]
    # another setting is another content version: a new version replaces the old one
    third = ingest_domain(storage, "news", config, max_shard_rows=128)
    assert third.content_version != first.content_version
    assert storage.entries("raw_documents/news") == ["manifest.json", third.version]
    schema = other.read_table(second.shards[0].path).schema
    assert schema.equals(DOCUMENT_SCHEMA)


def _multi_file_source(folder: Path, **settings) -> dict:
    """Five JSONL files: a filter, duplicate ids in a file and across files, a malformed
    line, a file the filter empties and a folder that matches the glob."""
    files = {
        "a": [("1", "keep"), ("2", "skip"), ("1", "keep"), ("3", "keep")],
        "b": [("4", "keep"), None, ("3", "keep")],
        "c": [("5", "skip"), ("6", "skip")],
        "e": [(str(i), "keep") for i in range(7, 12)],
    }
    folder.mkdir(exist_ok=True)
    for name, rows in files.items():
        lines = [b"{bad" if r is None else json.dumps(
            {"id": r[0], "text": f"text of {name}{r[0]}", "kind": r[1]}).encode() for r in rows
        ]  # fmt: skip
        (folder / f"{name}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (folder / "d.jsonl").mkdir(exist_ok=True)  # not a regular file: one quarantine row
    filter_ = {"field": "kind", "values": ["keep"]}
    return {"kind": "jsonl", "paths": [f"{folder}/*.jsonl"], "filter": filter_, **settings}


def _ingest_bytes(storage: Storage, sources: list[dict], **kwargs) -> tuple[list, dict]:
    config = DomainConfig.model_validate({"sources": sources})
    manifest = ingest_domain(storage, "web", config, max_shard_rows=3, **kwargs)
    files = [storage.read_bytes(s.path) for s in [*manifest.shards, *manifest.drops]]
    return files, manifest.model_dump(exclude={"version", "shards", "drops"})


def test_files_as_tasks_give_the_sequential_result_on_any_worker_count(tmp_path: Path) -> None:
    sources = [_multi_file_source(tmp_path / "in", name="all")] + [
        _multi_file_source(tmp_path / "in", name=f"cap{cap}", max_docs=cap)
        for cap in (1, 3, 4, 6, 9, 20)
    ]
    two = LocalShardMap(2)
    one_worker = _ingest_bytes(Storage(str(tmp_path / "one")), sources)
    two_workers = _ingest_bytes(Storage(str(tmp_path / "two")), sources, shard_map=two)
    two.close()
    assert one_worker == two_workers
    per_source = one_worker[1]["extra"]["per_source"]
    assert {name: c["read"] for name, c in per_source.items()} == {
        "all": 12, "cap1": 1, "cap3": 3, "cap4": 4, "cap6": 6, "cap9": 9, "cap20": 12,
    }  # fmt: skip
    assert per_source["all"] == {
        "read": 12, "written": 8, "quarantined": 4, "skipped_by_filter": 3,
        "field_present:filter": 13, "quarantined:duplicate_id": 2,
        "quarantined:malformed_json": 1, "quarantined:not_a_regular_file": 1,
    }  # fmt: skip
    # cap 6 is met after b.jsonl: the filtered records of c.jsonl still count, and the
    # folder d.jsonl's record stops the reading (as when the files are read one by one)
    assert per_source["cap6"]["skipped_by_filter"] == 3
    assert "quarantined:not_a_regular_file" not in per_source["cap6"]


def test_a_retry_reads_only_the_files_its_run_did_not(tmp_path: Path, monkeypatch) -> None:
    spy = FailOnce(ingest_module.ingest_file)
    monkeypatch.setattr(ingest_module, "ingest_file", spy)
    runs = {}
    sources = [_multi_file_source(tmp_path / "in", name="all")]
    for root, keys in (("other", ("A", "B")), ("same", ("A", "A"))):
        storage = Storage(str(tmp_path / root))
        spy.calls, spy.armed = 0, True
        with pytest.raises(RuntimeError, match="killed"):
            _ingest_bytes(storage, sources, resume_key=keys[0])
        spy.retry()
        runs[root] = (_ingest_bytes(storage, sources, resume_key=keys[1]), spy.calls)
    assert runs["other"][1] == 5 and runs["same"][1] == 4
    assert runs["other"][0] == runs["same"][0]
