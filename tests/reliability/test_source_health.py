"""Source health turns config mistakes visible only in the counts into findings."""

import json
from pathlib import Path
from typing import Any

import pytest

from llmstack_dagster.core.curation.ingest import ingest_domain
from llmstack_dagster.core.curation.readers import RawRecord
from llmstack_dagster.core.curation.records import SourceIngest
from llmstack_dagster.core.curation.source_health import (
    HealthFinding,
    Severity,
    has_errors,
    source_health,
)
from llmstack_dagster.core.curation.sources import DomainConfig
from llmstack_dagster.core.storage import read_manifest

ERROR, WARNING = Severity.ERROR, Severity.WARNING
DAY = "2021-01-01"


def domain_of(*sources: dict[str, Any]) -> DomainConfig:
    return DomainConfig.model_validate({"sources": list(sources)})


def jsonl(name: str, **settings: Any) -> dict[str, Any]:
    return {"name": name, "kind": "jsonl", "paths": ["x.jsonl"], **settings}


def counts_of(domain: DomainConfig, records: dict[str, list[dict[str, Any]]]) -> dict:
    """Per-source counts from real conversion, as ``ingest_domain`` produces them."""
    per_source = {}
    for source in domain.sources:
        state = SourceIngest(source, "web")
        for i, record in enumerate(records[source.name], start=1):
            raw = RawRecord("x.jsonl", f"line:{i}", record)
            if not state.in_filter(raw):
                state.counts["skipped_by_filter"] += 1
                continue
            state.convert(raw)
        per_source[source.name] = dict(state.counts)
    return per_source


def health(domain: DomainConfig, records: dict[str, list[dict]], **limits: float) -> list:
    return source_health(counts_of(domain, records), domain, **limits)


def docs(n: int, **fields: Any) -> list[dict[str, Any]]:
    return [{"id": f"d{i}", "text": f"document {i}", **fields} for i in range(n)]


def test_a_healthy_domain_has_no_findings() -> None:
    domain = domain_of(
        jsonl("a", fields={"created": "meta.date", "url": "link"}),
        jsonl("b", filter={"field": "lang", "values": ["en"]}),
    )
    records = {
        "a": docs(4, meta={"date": "2021-01-01"}, link="https://x"),
        "b": docs(3, lang="en") + docs(1, lang="de"),
    }
    assert health(domain, records) == []


def test_a_filter_on_a_field_no_record_has_is_an_error() -> None:
    domain = domain_of(jsonl("pile", filter={"field": "meta.set", "values": ["Github"]}))
    findings = health(domain, {"pile": docs(4, metadata={"set": "Github"})})
    assert findings == [
        HealthFinding(
            ERROR,
            "pile",
            "no_documents",
            "0 documents written (0 records read, 0 quarantined, 4 skipped by the filter)",
        ),
        HealthFinding(
            ERROR,
            "pile",
            "filtered_share",
            "filter on 'meta.set' dropped 4 of 4 records (100% > 50%); values: ['Github']",
        ),
        HealthFinding(
            WARNING, "pile", "field_absent", "filter.field: 'meta.set' present in 0 of 4 records"
        ),
    ]
    assert has_errors(findings)


def test_a_filter_keeping_too_few_records_is_an_error_unless_allowed() -> None:
    source = jsonl("pile", filter={"field": "set", "values": ["Github"]})
    records = {"pile": docs(2, set="Github") + docs(3, set="Wikipedia")}
    (finding,) = health(domain_of(source), records)
    assert (finding.severity, finding.check) == (ERROR, "filtered_share")
    assert finding.message.startswith("filter on 'set' dropped 3 of 5 records (60% > 50%)")
    assert health(domain_of(source), records, max_filtered_share=0.6) == []
    allowed = {**source, "filter": {**source["filter"], "max_filtered_share": 0.9}}
    assert health(domain_of(allowed), records) == []


def test_a_text_dir_pattern_matching_nothing_is_an_error() -> None:
    # the reader yields no record (or raises SourceError): zero documents must be an ERROR
    domain = domain_of({"name": "books", "kind": "text_dir", "path": "b", "pattern": "*.md"})
    findings = source_health({"books": dict(SourceIngest(domain.sources[0], "b").counts)}, domain)
    assert findings == [
        HealthFinding(
            ERROR,
            "books",
            "no_documents",
            "0 documents written (0 records read, 0 quarantined, 0 skipped by the filter)",
        )
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"id": "doc_id"}, "fields.id: 'doc_id' present in 0 of 3 records"),
        ({"created": "meta.date"}, "fields.created: 'meta.date' present in 0 of 3 records"),
        ({"url": "URL"}, "fields.url: 'URL' present in 0 of 3 records"),
        ({"language": "lang"}, "fields.language: 'lang' present in 0 of 3 records"),
    ],
)
def test_a_mistyped_field_path_is_a_warning(fields: dict[str, str], message: str) -> None:
    domain = domain_of(jsonl("a", fields=fields))
    records = {"a": docs(3, meta={"published": "2021-01-01"}, url="https://x", language="en")}
    assert health(domain, records) == [HealthFinding(WARNING, "a", "field_absent", message)]


def test_a_field_present_in_some_records_is_fine() -> None:
    domain = domain_of(jsonl("a", fields={"created": "date"}))
    records = {"a": docs(1, date="2021-01-01") + docs(9)}
    assert health(domain, records) == []


def test_too_many_quarantined_records_is_an_error() -> None:
    domain = domain_of(jsonl("a", fields={"created": "ts"}))
    bad = [{"id": "e1", "text": " "}, {"id": "e2", "text": ""}, {"id": "t", "text": "x", "ts": "?"}]
    records = {"a": docs(2, ts=DAY) + bad}
    assert health(domain, records) == [
        HealthFinding(
            ERROR,
            "a",
            "quarantined_share",
            "3 of 5 records quarantined (60% > 50%); reasons: empty_text 2, invalid_created 1",
        )
    ]
    assert health(domain, records, max_lost_share=0.6) == []
    assert health(domain, {"a": docs(3, ts=DAY) + bad[:2]}) == []  # 40%
    assert health(domain, {"a": docs(2, ts=DAY) + bad[:2]}) == []  # exactly 50% is tolerated
    (strict,) = health(domain, {"a": docs(4, ts=DAY) + bad[:1]}, max_lost_share=0.1)
    assert strict.message.startswith("1 of 5 records quarantined (20% > 10%)")


def test_every_record_quarantined_gives_both_errors() -> None:
    domain = domain_of(jsonl("a", fields={"text": "body"}))
    findings = health(domain, {"a": docs(2)})
    assert [(f.severity, f.check) for f in findings] == [
        (ERROR, "no_documents"),
        (ERROR, "quarantined_share"),
    ]
    assert findings[1].message.endswith("reasons: missing_text 2")


def test_a_source_without_counts_is_an_error_and_limits_are_checked() -> None:
    domain = domain_of(jsonl("a"), jsonl("b"))
    findings = source_health({"a": {"read": 1, "written": 1, "quarantined": 0}}, domain)
    assert findings == [
        HealthFinding(ERROR, "b", "not_ingested", "no counts recorded: the source was not ingested")
    ]
    with pytest.raises(ValueError, match="max_lost_share must be within"):
        source_health({}, domain, max_lost_share=1.5)


def test_findings_from_a_real_ingest_manifest(storage, tmp_path: Path) -> None:
    path = tmp_path / "news.jsonl"
    rows = [{"id": f"n{i}", "text": f"story {i}", "published": "2021-05-01"} for i in range(6)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    domain = domain_of(
        {"name": "news", "kind": "jsonl", "paths": [str(path)], "fields": {"created": "date"}},
        {
            "name": "en_only",
            "kind": "jsonl",
            "paths": [str(path)],
            "filter": {"field": "lang", "values": ["en"]},
        },
    )
    ingest_domain(storage, "news", domain)
    per_source = read_manifest(storage, "raw_documents", "news").extra["per_source"]
    findings = source_health(per_source, domain)
    assert [(f.severity, f.source, f.check) for f in findings] == [
        (WARNING, "news", "field_absent"),
        (ERROR, "en_only", "no_documents"),
        (ERROR, "en_only", "filtered_share"),
        (WARNING, "en_only", "field_absent"),
    ]
    assert findings[0].message == "fields.created: 'date' present in 0 of 6 records"
    assert findings[3].message == "filter.field: 'lang' present in 0 of 6 records"
