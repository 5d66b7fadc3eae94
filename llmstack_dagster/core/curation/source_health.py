"""Source health: configuration mistakes that show only in the counts of an ingestion.

A source can be valid YAML and still feed nothing: a glob that matches no file, a filter on a
field no record has, a mistyped ``fields.created`` path. :func:`source_health` reads the
per-source counts of one domain (``manifest.extra["per_source"]``, the keys written by
:class:`~llmstack_dagster.core.curation.records.SourceIngest`) and returns findings:

* ERROR ``no_documents``: the source wrote no document;
* ERROR ``quarantined_share``: more than ``max_lost_share`` of its records were quarantined;
* ERROR ``filtered_share``: its ``filter`` dropped more than ``max_filtered_share`` (default
  ``max_lost_share``) of its records, ``skipped_by_filter / (read + skipped_by_filter)``; the
  filter's own ``max_filtered_share`` setting in the corpus file overrides the limit;
* ERROR ``not_ingested``: a configured source has no counts at all;
* WARNING ``field_absent``: a mapped field path (or the filter's field) present in no record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from llmstack_dagster.core.curation.sources import DomainConfig, SourceBase, mapped_fields

DEFAULT_MAX_LOST_SHARE = 0.5


class Severity(StrEnum):
    ERROR = "ERROR"
    WARNING = "WARNING"


@dataclass(frozen=True)
class Limits:
    """Largest tolerated shares of a source's records lost to quarantine and to its filter."""

    max_lost_share: float = DEFAULT_MAX_LOST_SHARE
    max_filtered_share: float = DEFAULT_MAX_LOST_SHARE

    def __post_init__(self) -> None:
        for name in ("max_lost_share", "max_filtered_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be within [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class HealthFinding:
    """One problem of one source: ``check`` is a stable name, ``message`` is for people."""

    severity: Severity
    source: str
    check: str
    message: str


def source_health(
    per_source: Mapping[str, Mapping[str, int]],
    domain: DomainConfig,
    *,
    max_lost_share: float = DEFAULT_MAX_LOST_SHARE,
    max_filtered_share: float | None = None,
) -> list[HealthFinding]:
    """Findings for every source of ``domain``, in configuration order; empty when healthy."""
    filtered = max_lost_share if max_filtered_share is None else max_filtered_share
    limits = Limits(max_lost_share, filtered)
    findings: list[HealthFinding] = []
    for source in domain.sources:
        counts = per_source.get(source.name)
        if counts is None:
            message = "no counts recorded: the source was not ingested"
            findings.append(HealthFinding(Severity.ERROR, source.name, "not_ingested", message))
            continue
        findings.extend(check_source(source, counts, limits))
    return findings


def has_errors(findings: list[HealthFinding]) -> bool:
    """Whether any finding is an ERROR (the asset check fails)."""
    return any(f.severity is Severity.ERROR for f in findings)


def check_source(
    source: SourceBase, counts: Mapping[str, int], limits: Limits = Limits()
) -> list[HealthFinding]:
    """The findings of one source from its counts."""
    checks = (_no_documents, _quarantined_share, _filtered_share, _absent_fields)
    return [finding for check in checks for finding in check(source, counts, limits)]


def _no_documents(source: SourceBase, counts: Mapping[str, int], _: Limits) -> list[HealthFinding]:
    if counts.get("written", 0) > 0:
        return []
    read, skipped = counts.get("read", 0), counts.get("skipped_by_filter", 0)
    message = (
        f"0 documents written ({read} records read, {counts.get('quarantined', 0)} "
        f"quarantined, {skipped} skipped by the filter)"
    )
    return [HealthFinding(Severity.ERROR, source.name, "no_documents", message)]


def _quarantined_share(
    source: SourceBase, counts: Mapping[str, int], limits: Limits
) -> list[HealthFinding]:
    limit = limits.max_lost_share
    read, quarantined = counts.get("read", 0), counts.get("quarantined", 0)
    if read == 0 or quarantined / read <= limit:
        return []
    reasons = _top_reasons(counts)
    message = (
        f"{quarantined} of {read} records quarantined ({quarantined / read:.0%} > "
        f"{limit:.0%}); reasons: {reasons}"
    )
    return [HealthFinding(Severity.ERROR, source.name, "quarantined_share", message)]


def _filtered_share(
    source: SourceBase, counts: Mapping[str, int], limits: Limits
) -> list[HealthFinding]:
    limit = limits.max_filtered_share
    record_filter = getattr(source, "filter", None)
    skipped = counts.get("skipped_by_filter", 0)
    seen = counts.get("read", 0) + skipped
    if record_filter is None or seen == 0:
        return []
    if record_filter.max_filtered_share is not None:
        limit = record_filter.max_filtered_share
    if skipped / seen <= limit:
        return []
    message = (
        f"filter on {record_filter.field!r} dropped {skipped} of {seen} records "
        f"({skipped / seen:.0%} > {limit:.0%}); values: {record_filter.values}"
    )
    return [HealthFinding(Severity.ERROR, source.name, "filtered_share", message)]


def _absent_fields(source: SourceBase, counts: Mapping[str, int], _: Limits) -> list[HealthFinding]:
    read, skipped = counts.get("read", 0), counts.get("skipped_by_filter", 0)
    paths = {f"fields.{role}": (role, path) for role, path in mapped_fields(source).items()}
    record_filter = getattr(source, "filter", None)
    if record_filter is not None:
        paths["filter.field"] = ("filter", record_filter.field)
    findings = []
    for key, (role, path) in paths.items():
        seen = read + skipped if role == "filter" else read
        if seen == 0 or counts.get(f"field_present:{role}", -1) != 0:
            continue  # nothing read, or the field was seen (or not counted by this version)
        message = f"{key}: {path!r} present in 0 of {seen} records"
        findings.append(HealthFinding(Severity.WARNING, source.name, "field_absent", message))
    return findings


def _top_reasons(counts: Mapping[str, int], limit: int = 3) -> str:
    reasons = {k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("quarantined:")}
    top = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    return ", ".join(f"{reason} {n}" for reason, n in top) or "unknown"
