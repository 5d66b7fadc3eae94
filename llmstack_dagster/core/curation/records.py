"""Record conversion: one source's raw records become documents or quarantine rows.

Every record a reader yields is counted as ``read`` and ends up either as a document
(``written``) or as a quarantine row with its reason, so ``read = written + quarantined``.
Conversion never raises on a record: every problem is a quarantine row.

Field types: ``text`` must be a string (UTF-8 ``bytes`` are decoded), else ``invalid_text``;
``id`` may be a string or an integer (made a string), else ``invalid_id``; ``url`` and
``language`` must be strings, else ``invalid_url`` / ``invalid_language``; ``created`` takes
ISO-8601 strings, epoch seconds or milliseconds, datetimes and dates (midnight UTC), else
``invalid_created``. A lone surrogate in any string that would be written is ``invalid_utf8``
with the field named.

Counts keys (``SourceIngest.counts``): ``read``, ``written``, ``quarantined``,
``quarantined:<reason>``, ``skipped_by_filter``, and ``field_present:<role>`` for each
configured field role (id, created, url, language; ``filter`` for the filter's field): how
many decoded records had a non-null value at that path.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, date, datetime, time
from typing import Any

from llmstack_dagster.core.curation.readers import RawRecord
from llmstack_dagster.core.curation.sources import SourceBase, mapped_fields
from llmstack_dagster.core.schema import SAMPLE_CHARS, make_document, make_drop

STAGE = "raw_documents"
BASE_COUNTS = ("read", "written", "quarantined", "skipped_by_filter")
EPOCH_MS_THRESHOLD = 1e11  # larger epoch values are milliseconds


class RecordRejected(Exception):
    """Why one record cannot become a document (internal to conversion)."""

    def __init__(
        self, reason: str, detail: str, sample: Any = None, doc_id: str | None = None
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail, self.sample, self.doc_id = reason, detail, sample, doc_id


def get_field(record: dict[str, Any], path: str | None) -> Any:
    """Value at a dotted path (``metadata.pile_set_name``), or None."""
    if path is None:
        return None
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def parse_created(value: Any) -> datetime:
    """ISO-8601 strings, epoch seconds (or milliseconds), datetimes and dates, as UTC.

    Raises ValueError for anything else, including values out of range once in UTC.
    """
    try:
        created = _to_datetime(value)
        if created.tzinfo is None:
            return created.replace(tzinfo=UTC)
        return created.astimezone(UTC)
    except (OverflowError, OSError) as err:
        raise ValueError(f"timestamp {value!r} is out of range: {err}") from None


def _to_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if abs(value) > EPOCH_MS_THRESHOLD else value
        return datetime.fromtimestamp(seconds, tz=UTC)
    if isinstance(value, str) and value.strip():
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    raise ValueError(f"not a timestamp: {value!r}")


def is_utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8 (it has no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_utf8(text: str | None) -> str | None:
    """``text`` with lone surrogates replaced by ``?``, safe to write."""
    return None if text is None else text.encode("utf-8", "replace").decode("utf-8")


def invalid_utf8_path(value: Any, path: str = "") -> str | None:
    """Dotted path of the first string (key or value) in ``value`` that is not UTF-8."""
    if isinstance(value, str):
        return None if is_utf8(value) else path
    if isinstance(value, dict):
        items = [(f"{path}.{k}" if path else str(k), k, v) for k, v in value.items()]
        for sub, key, item in items:
            if isinstance(key, str) and not is_utf8(key):
                return sub
            found = invalid_utf8_path(item, sub)
            if found:
                return found
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = invalid_utf8_path(item, f"{path}[{i}]")
            if found:
                return found
    return None


def preview(record: dict[str, Any]) -> str:
    """A short printable preview of a record for a quarantine sample."""
    try:
        return repr(record)[:SAMPLE_CHARS]
    except Exception as err:  # a value whose repr fails must not abort conversion
        return f"<record with unprintable values: {type(err).__name__}>"


class SourceIngest:
    """Turns one source's raw records into documents or quarantine rows."""

    def __init__(self, source: SourceBase, domain: str) -> None:
        self.source = source
        self.domain = domain
        self.fields = getattr(source, "fields", None)
        self.filter = getattr(source, "filter", None)
        self.roles = mapped_fields(source)
        self.counts: Counter[str] = Counter(dict.fromkeys(BASE_COUNTS, 0))
        for role in self.roles:
            self.counts[f"field_present:{role}"] = 0
        if self.filter is not None:
            self.counts["field_present:filter"] = 0
        # top-level fields moved into the schema; nested ones stay in metadata with their parent
        self.mapped_keys = {p for p in self._mapped_paths() if "." not in p}

    def quarantine(
        self,
        raw: RawRecord,
        reason: str,
        detail: str | None = None,
        sample: Any = None,
        doc_id: str | None = None,
    ) -> dict[str, Any]:
        """Count and build one quarantine row; every string in it is made UTF-8 safe."""
        self.counts["quarantined"] += 1
        self.counts[f"quarantined:{reason}"] += 1
        sample = sample if sample is not None else raw.sample
        if isinstance(sample, str):
            sample = clean_utf8(sample[:SAMPLE_CHARS])
        return make_drop(
            stage=STAGE,
            domain=self.domain,
            source=self.source.name,
            id=clean_utf8(doc_id),
            locator=clean_utf8(f"{raw.uri}#{raw.locator}"),
            reason=reason,
            detail=clean_utf8(detail if detail is not None else raw.detail),
            sample=sample,
        )

    def in_filter(self, raw: RawRecord) -> bool:
        """Whether the record passes the source's filter; a missing field does not."""
        if self.filter is None or raw.record is None:
            return True
        value = get_field(raw.record, self.filter.field)
        if value is None:
            return False
        self.counts["field_present:filter"] += 1
        return str(value) in self.filter.values

    def convert(self, raw: RawRecord) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(document, None) or (None, quarantine row); never raises on a bad record."""
        self.counts["read"] += 1
        if raw.error is not None:
            return None, self.quarantine(raw, raw.error)
        record = raw.record or {}
        self._count_present(record)
        try:
            doc = self._document(raw, record)
        except RecordRejected as rej:
            return None, self.quarantine(raw, rej.reason, rej.detail, rej.sample, rej.doc_id)
        except Exception as err:  # a record no check foresaw must not abort the domain
            detail = f"{type(err).__name__}: {err}"
            return None, self.quarantine(raw, "conversion_error", detail, preview(record))
        self.counts["written"] += 1
        return doc, None

    def _count_present(self, record: dict[str, Any]) -> None:
        for role, path in self.roles.items():
            if get_field(record, path) is not None:
                self.counts[f"field_present:{role}"] += 1

    def _document(self, raw: RawRecord, record: dict[str, Any]) -> dict[str, Any]:
        text = self._text(record)
        doc_id = self._doc_id(record, text)
        created = self._created(raw, record, text, doc_id)
        url = self._optional_str(record, "url", text, doc_id)
        language = self._optional_str(record, "language", text, doc_id)
        metadata = {k: v for k, v in record.items() if k not in self.mapped_keys}
        metadata["provenance"] = {
            "source": self.source.name,
            "kind": self.source.kind,
            "uri": raw.uri,
            "locator": raw.locator,
        }
        try:
            doc = make_document(
                id=doc_id,
                text=text,
                domain=self.domain,
                source=self.source.name,
                created=created,
                url=url,
                language=language or self.source.language,
                metadata=metadata,
            )
        except (TypeError, ValueError, RecursionError) as err:
            detail = f"metadata cannot be stored as JSON: {type(err).__name__}: {err}"
            raise RecordRejected("invalid_metadata", detail, text, doc_id) from None
        if not is_utf8(doc["metadata"]):
            where = invalid_utf8_path(metadata) or "metadata"
            detail = f"field {where!r} is not valid UTF-8 (lone surrogate)"
            raise RecordRejected("invalid_utf8", detail, text, doc_id)
        return doc

    def _text(self, record: dict[str, Any]) -> str:
        path = self.fields.text if self.fields else "text"
        text = get_field(record, path)
        if text is None:
            detail = f"field {path!r} is missing"
            raise RecordRejected("missing_text", detail, preview(record))
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as err:
                raise RecordRejected("invalid_utf8", f"field {path!r}: {err}", text) from None
        if not isinstance(text, str):
            detail = f"field {path!r} is a {type(text).__name__}, not a string"
            raise RecordRejected("invalid_text", detail, preview(record))
        if not text.strip():
            raise RecordRejected("empty_text", "text is empty or whitespace")
        if not is_utf8(text):
            detail = f"field {path!r} is not valid UTF-8 (lone surrogate)"
            raise RecordRejected("invalid_utf8", detail, text)
        size = len(text.encode("utf-8"))
        if size > self.source.max_doc_bytes:
            detail = f"{size} bytes > max_doc_bytes {self.source.max_doc_bytes}"
            raise RecordRejected("oversize", detail, text)
        return text

    def _doc_id(self, record: dict[str, Any], text: str) -> str:
        path = self.fields.id if self.fields else "id"
        value = get_field(record, path)
        if value is None or value == "":
            return f"{self.source.name}/sha1:" + hashlib.sha1(text.encode("utf-8")).hexdigest()
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            detail = f"field {path!r} is a {type(value).__name__}, not a string or integer"
            raise RecordRejected("invalid_id", detail, text)
        if not is_utf8(value):
            detail = f"field {path!r} is not valid UTF-8 (lone surrogate)"
            raise RecordRejected("invalid_utf8", detail, text, f"{self.source.name}/{value}")
        return f"{self.source.name}/{value}"

    def _created(self, raw: RawRecord, record: dict[str, Any], text: str, doc_id: str) -> datetime:
        path = self.fields.created if self.fields else None
        value = get_field(record, path)
        where = f"field {path!r}" if value is not None else "the reader's creation time"
        if value is None:
            value = raw.created or self.source.default_created
        try:
            created = parse_created(value)
        except ValueError as err:
            raise RecordRejected("invalid_created", f"{where}: {err}", text, doc_id) from None
        lo, hi = self.source.created_after, self.source.created_before
        if (lo and created < lo) or (hi and created >= hi):
            detail = f"created {created.isoformat()} outside [{lo}, {hi})"
            raise RecordRejected("outside_date_window", detail, text, doc_id)
        return created

    def _optional_str(
        self, record: dict[str, Any], role: str, text: str, doc_id: str
    ) -> str | None:
        """The url or language value: None when absent or empty, a string, or a rejection."""
        default = "url" if role == "url" else None
        path = getattr(self.fields, role) if self.fields else default
        value = get_field(record, path)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            detail = f"field {path!r} is a {type(value).__name__}, not a string"
            raise RecordRejected(f"invalid_{role}", detail, text, doc_id)
        if not is_utf8(value):
            detail = f"field {path!r} is not valid UTF-8 (lone surrogate)"
            raise RecordRejected("invalid_utf8", detail, text, doc_id)
        return value

    def _mapped_paths(self) -> list[str]:
        if self.fields is None:
            return ["text", "id", "url"]
        return [
            p
            for p in (
                self.fields.text,
                self.fields.id,
                self.fields.created,
                self.fields.url,
                self.fields.language,
            )
            if p
        ]
