"""Every per-record problem in conversion is a quarantine row with a reason, never a crash."""

import io
import json
import math
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmstack_dagster.core.curation.ingest import ingest_domain
from llmstack_dagster.core.curation.readers import RawRecord, read_source
from llmstack_dagster.core.curation.records import SourceIngest, parse_created
from llmstack_dagster.core.curation.sources import DomainConfig, SourceBase
from llmstack_dagster.core.schema import documents_table, drops_table
from llmstack_dagster.core.storage import iter_shard_tables

BASE = {"read", "written", "quarantined", "skipped_by_filter"}


def make_source(**settings: Any) -> SourceBase:
    settings = {"name": "src", "kind": "jsonl", "paths": ["x.jsonl"], **settings}
    return DomainConfig.model_validate({"sources": [settings]}).sources[0]


def convert_all(
    source: SourceBase, records: list[dict[str, Any] | RawRecord]
) -> tuple[list[dict], list[dict], dict[str, int]]:
    """Run records through conversion as ``ingest_domain`` does; both outputs must write."""
    state = SourceIngest(source, "web")
    docs, drops = [], []
    for i, record in enumerate(records, start=1):
        raw = record if isinstance(record, RawRecord) else RawRecord("x.jsonl", f"line:{i}", record)
        if not state.in_filter(raw):
            state.counts["skipped_by_filter"] += 1
            continue
        doc, drop = state.convert(raw)
        (docs if doc is not None else drops).append(doc if doc is not None else drop)
    pq.write_table(documents_table(docs), io.BytesIO())  # the write that used to crash
    pq.write_table(drops_table(drops), io.BytesIO())
    counts = dict(state.counts)
    assert counts["read"] == counts["written"] + counts["quarantined"]
    return docs, drops, counts


def only_drop(source: SourceBase, record: dict[str, Any]) -> dict[str, Any]:
    docs, drops, _ = convert_all(source, [record])
    assert not docs and len(drops) == 1
    return drops[0]


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"id": "a\ud800", "text": "t"}, "id"),
        ({"id": "a", "text": "t", "link": "http://x/\udfff"}, "link"),
        ({"id": "a", "text": "t", "lang": "e\ud800n"}, "lang"),
        ({"id": "a", "text": "t", "title": "bad \ud800"}, "title"),
        ({"id": "a", "text": "t", "meta": {"author": "\ud800"}}, "meta.author"),
        ({"id": "a", "text": "t", "meta": {"tags": ["ok", "\ud800"]}}, "meta.tags[1]"),
        ({"id": "a", "text": "t", "meta": {"\ud800key": 1}}, "meta.\ud800key"),
    ],
)
def test_a_lone_surrogate_in_any_field_is_invalid_utf8_naming_the_field(
    record: dict[str, Any], field: str
) -> None:
    source = make_source(fields={"text": "text", "id": "id", "url": "link", "language": "lang"})
    drop = only_drop(source, record)
    assert drop["reason"] == "invalid_utf8"
    assert drop["detail"] == f"field {field!r} is not valid UTF-8 (lone surrogate)"
    assert drop["id"] in (None, "src/a", "src/a?")  # made writable, never the raw surrogate


def test_a_surrogate_in_the_reader_locator_is_quarantined_and_writable() -> None:
    raw = RawRecord("dir/bad\udcff.txt", "file:bad\udcff.txt", {"id": "x", "text": "fine"})
    drop = only_drop(make_source(), raw)
    assert drop["reason"] == "invalid_utf8"
    assert drop["detail"] == "field 'provenance.uri' is not valid UTF-8 (lone surrogate)"
    assert drop["locator"] == "dir/bad?.txt#file:bad?.txt"


@pytest.mark.parametrize(
    "value",
    [
        "9999-12-31T23:59:59-05:00",  # overflows when converted to UTC
        "0001-01-01T00:00:00+05:00",  # underflows when converted to UTC
        "0000-01-01T00:00:00",  # year 0
        "yesterday",
        "",
        1e20,  # epoch far out of range
        -1e20,
        math.nan,
        math.inf,
        True,
        [2024, 1, 1],
    ],
)
def test_out_of_range_or_unparseable_timestamps_are_invalid_created(value: Any) -> None:
    drop = only_drop(make_source(fields={"created": "ts"}), {"id": "a", "text": "t", "ts": value})
    assert drop["reason"] == "invalid_created" and drop["id"] == "src/a"
    assert drop["detail"].startswith("field 'ts': ")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("9999-12-31T23:59:59+00:00", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("2024-05-01T10:00:00+02:00", datetime(2024, 5, 1, 8, tzinfo=UTC)),
        ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        (1_700_000_000, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        (1_700_000_000_000, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        (date(2024, 3, 1), datetime(2024, 3, 1, tzinfo=UTC)),
        (datetime(2024, 3, 1, 12), datetime(2024, 3, 1, 12, tzinfo=UTC)),
    ],
)
def test_valid_timestamps_parse_as_utc(value: Any, expected: datetime) -> None:
    created = parse_created(value)
    assert created == expected and created.utcoffset().total_seconds() == 0


def test_parse_created_raises_only_value_error_for_overflow() -> None:
    with pytest.raises(ValueError, match="out of range"):
        parse_created("9999-12-31T23:59:59-05:00")


@pytest.mark.parametrize("date_type", [pa.date32(), pa.date64()])
def test_parquet_date_columns_are_valid_creation_dates(tmp_path: Path, date_type) -> None:
    days = [date(2021, 1, 1), date(2022, 6, 30), None]
    table = pa.table(
        {
            "id": ["a", "b", "c"],
            "text": ["one", "two", "three"],
            "day": pa.array(days, type=date_type),
        }
    )
    pq.write_table(table, tmp_path / "d.parquet")
    source = make_source(
        kind="parquet",
        paths=[str(tmp_path / "d.parquet")],
        fields={"created": "day"},
        default_created="2000-01-01T00:00:00Z",
    )
    docs, drops, counts = convert_all(source, list(read_source(source)))
    assert not drops and counts["field_present:created"] == 2
    assert [d["created"] for d in docs] == [
        datetime(2021, 1, 1, tzinfo=UTC),
        datetime(2022, 6, 30, tzinfo=UTC),
        datetime(2000, 1, 1, tzinfo=UTC),  # null: the source's default
    ]


def test_ids_may_be_integers_and_nothing_else_but_strings() -> None:
    records = [
        {"id": 42, "text": "int id"},
        {"id": "s-1", "text": "str id"},
        {"id": "", "text": "empty id"},
        {"id": None, "text": "null id"},
        {"id": True, "text": "bool id"},
        {"id": 1.5, "text": "float id"},
        {"id": ["a"], "text": "list id"},
        {"id": {"k": 1}, "text": "dict id"},
    ]
    docs, drops, _ = convert_all(make_source(), records)
    assert [d["id"] for d in docs][:2] == ["src/42", "src/s-1"]
    assert all(d["id"].startswith("src/sha1:") for d in docs[2:]) and len(docs) == 4
    assert [(d["reason"], d["detail"]) for d in drops] == [
        ("invalid_id", "field 'id' is a bool, not a string or integer"),
        ("invalid_id", "field 'id' is a float, not a string or integer"),
        ("invalid_id", "field 'id' is a list, not a string or integer"),
        ("invalid_id", "field 'id' is a dict, not a string or integer"),
    ]


def test_url_and_language_must_be_strings() -> None:
    source = make_source(fields={"url": "link", "language": "lang"}, language="xx")
    records = [
        {"id": "ok", "text": "t", "link": "https://a.example/", "lang": "de"},
        {"id": "empty", "text": "t", "link": "", "lang": ""},
        {"id": "u1", "text": "t", "link": 17},
        {"id": "u2", "text": "t", "link": ["https://a.example/"]},
        {"id": "l1", "text": "t", "lang": ["en"]},
    ]
    docs, drops, _ = convert_all(source, records)
    assert [(d["id"], d["url"], d["language"]) for d in docs] == [
        ("src/ok", "https://a.example/", "de"),
        ("src/empty", None, "xx"),
    ]
    assert [(d["id"], d["reason"], d["detail"]) for d in drops] == [
        ("src/u1", "invalid_url", "field 'link' is a int, not a string"),
        ("src/u2", "invalid_url", "field 'link' is a list, not a string"),
        ("src/l1", "invalid_language", "field 'lang' is a list, not a string"),
    ]


def test_text_must_be_a_string_and_utf8_bytes_are_decoded() -> None:
    records = [
        {"id": "b", "text": b"bytes ok"},
        {"id": "m", "body": "no text"},
        {"id": "i", "text": 12},
        {"id": "l", "text": ["a", "b"]},
        {"id": "x", "text": b"\xff\xfe"},
    ]
    docs, drops, counts = convert_all(make_source(), records)
    assert [(d["id"], d["text"]) for d in docs] == [("src/b", "bytes ok")]
    assert [d["reason"] for d in drops] == [
        "missing_text",
        "invalid_text",
        "invalid_text",
        "invalid_utf8",
    ]
    assert drops[1]["detail"] == "field 'text' is a int, not a string"
    assert counts == {
        **dict.fromkeys(BASE, 0),
        "read": 5,
        "written": 1,
        "quarantined": 4,
        "quarantined:missing_text": 1,
        "quarantined:invalid_text": 2,
        "quarantined:invalid_utf8": 1,
    }


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("cannot print me")


def test_metadata_that_cannot_be_stored_is_quarantined_not_raised() -> None:
    records = [
        {"id": "k", "text": "t", "extra": {("a", "b"): 1}},  # a key JSON cannot hold
        {"id": "o", "text": "t", "extra": Unprintable()},  # a failure no check foresaw
        {"id": "fine", "text": "t", "extra": {"when": datetime(2020, 1, 1)}},
    ]
    docs, drops, _ = convert_all(make_source(), records)
    assert [d["id"] for d in docs] == ["src/fine"]
    assert [(d["id"], d["reason"]) for d in drops] == [
        ("src/k", "invalid_metadata"),
        (None, "conversion_error"),
    ]
    assert drops[1]["detail"] == "RuntimeError: cannot print me"


def test_duplicate_ids_are_not_tracked_in_memory_by_conversion() -> None:
    records = [{"id": i % 500, "text": f"doc {i}"} for i in range(2000)]
    state = SourceIngest(make_source(), "web")
    for i, record in enumerate(records):
        state.convert(RawRecord("x.jsonl", f"line:{i}", record))
    assert state.counts["written"] == 2000  # ingest finds duplicates after writing
    assert not hasattr(state, "seen_ids")
    sizes = {k: len(v) for k, v in vars(state).items() if isinstance(v, set | dict | list)}
    assert all(size < 20 for size in sizes.values()), sizes


def test_field_presence_is_counted_per_configured_role() -> None:
    source = make_source(
        fields={"text": "body", "id": "doc_id", "created": "meta.date", "url": "link"},
        filter={"field": "meta.kind", "values": ["news"]},
    )
    records = [
        {"body": "a", "doc_id": "1", "meta": {"date": "2021-01-01", "kind": "news"}},
        {"body": "b", "link": "https://x", "meta": {"kind": "news"}},
        {"body": "c", "doc_id": None, "meta": {"kind": "blog"}},
        {"body": "d"},
        {"body": "", "doc_id": "5", "meta": {"kind": "news", "date": "nope"}},
    ]
    docs, drops, counts = convert_all(source, records)
    assert counts == {
        "read": 3,
        "written": 2,
        "quarantined": 1,
        "quarantined:empty_text": 1,
        "skipped_by_filter": 2,
        "field_present:id": 2,
        "field_present:created": 2,
        "field_present:url": 1,
        "field_present:filter": 4,
    }


def test_default_mappings_add_no_presence_counts() -> None:
    _, _, counts = convert_all(make_source(), [{"text": "no id at all"}])
    assert set(counts) == BASE
    source = make_source(fields={"text": "body", "id": None})
    _, _, counts = convert_all(source, [{"body": "x"}])
    assert set(counts) == BASE


def test_ingest_writes_a_domain_with_every_kind_of_bad_record(storage, tmp_path: Path) -> None:
    lines = [
        {"id": "good", "text": "fine", "ts": "2021-01-01T00:00:00Z"},
        {"id": "s\ud800", "text": "bad id", "ts": "2021-01-01T00:00:00Z"},
        {"id": "meta", "text": "bad meta", "ts": "2021-01-01T00:00:00Z", "m": {"a": "\udfff"}},
        {"id": "late", "text": "overflow", "ts": "9999-12-31T23:59:59-05:00"},
        {"id": 7, "text": "int id", "ts": 1_600_000_000},
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    config = DomainConfig.model_validate(
        {
            "sources": [
                {"name": "bad", "kind": "jsonl", "paths": [str(path)], "fields": {"created": "ts"}}
            ]
        }
    )
    manifest = ingest_domain(storage, "web", config)
    docs = [r for _, t in iter_shard_tables(storage, manifest.shards) for r in t.to_pylist()]
    assert sorted(d["id"] for d in docs) == ["bad/7", "bad/good"]
    assert manifest.extra["quarantine_reasons"] == {"invalid_created": 1, "invalid_utf8": 2}
    assert manifest.extra["per_source"]["bad"]["field_present:created"] == 5
