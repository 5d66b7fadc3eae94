"""Record conversion: one source's raw records become documents or quarantine rows.

Every record a reader yields is counted as ``read`` and ends up either as a document
(``written``) or as a quarantine row with its reason, so ``read = written + quarantined``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from llmstack_dagster.core.curation.readers import RawRecord
from llmstack_dagster.core.curation.sources import SourceBase
from llmstack_dagster.core.schema import make_document, make_drop

STAGE = "raw_documents"


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
    """ISO-8601 strings, epoch seconds (or milliseconds) and datetimes, as UTC."""
    if isinstance(value, datetime):
        created = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        created = datetime.fromtimestamp(value / 1000 if value > 1e11 else value, tz=UTC)
    elif isinstance(value, str) and value.strip():
        created = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    else:
        raise ValueError(f"not a timestamp: {value!r}")
    return created if created.tzinfo else created.replace(tzinfo=UTC)


class SourceIngest:
    """Turns one source's raw records into documents or quarantine rows."""

    def __init__(self, source: SourceBase, domain: str) -> None:
        self.source = source
        self.domain = domain
        self.fields = getattr(source, "fields", None)
        self.filter = getattr(source, "filter", None)
        self.seen_ids: set[bytes] = set()
        self.counts: Counter[str] = Counter()
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
        self.counts["quarantined"] += 1
        self.counts[f"quarantined:{reason}"] += 1
        return make_drop(
            stage=STAGE,
            domain=self.domain,
            source=self.source.name,
            id=doc_id,
            locator=f"{raw.uri}#{raw.locator}",
            reason=reason,
            detail=detail if detail is not None else raw.detail,
            sample=sample if sample is not None else raw.sample,
        )

    def in_filter(self, raw: RawRecord) -> bool:
        if self.filter is None or raw.record is None:
            return True
        return str(get_field(raw.record, self.filter.field)) in self.filter.values

    def convert(self, raw: RawRecord) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(document, None) or (None, quarantine row)."""
        self.counts["read"] += 1
        if raw.error is not None:
            return None, self.quarantine(raw, raw.error)
        record = raw.record or {}
        fields = self.fields
        text_path = fields.text if fields else "text"
        text = get_field(record, text_path)
        if text is None or not isinstance(text, str):
            return None, self.quarantine(
                raw,
                "missing_text",
                f"field {text_path!r} is missing or not a string",
                sample=str(record)[:200],
            )
        if not text.strip():
            return None, self.quarantine(raw, "empty_text", "text is empty or whitespace")
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as err:
            return None, self.quarantine(
                raw, "invalid_utf8", str(err), sample=text.encode("utf-8", "replace")
            )
        if size > self.source.max_doc_bytes:
            return None, self.quarantine(
                raw,
                "oversize",
                f"{size} bytes > max_doc_bytes {self.source.max_doc_bytes}",
                sample=text,
            )
        native_id = get_field(record, fields.id if fields else "id")
        if native_id is None or native_id == "":
            native_id = "sha1:" + hashlib.sha1(text.encode("utf-8")).hexdigest()
        doc_id = f"{self.source.name}/{native_id}"
        id_key = hashlib.blake2b(doc_id.encode("utf-8"), digest_size=16).digest()
        if id_key in self.seen_ids:
            return None, self.quarantine(
                raw,
                "duplicate_id",
                f"id {doc_id!r} seen earlier in this source",
                sample=text,
                doc_id=doc_id,
            )
        self.seen_ids.add(id_key)
        created_value = get_field(record, fields.created) if fields and fields.created else None
        try:
            if created_value is not None:
                created = parse_created(created_value)
            else:
                created = raw.created or self.source.default_created
        except (ValueError, OverflowError, OSError) as err:
            return None, self.quarantine(
                raw, "invalid_created", str(err), sample=text, doc_id=doc_id
            )
        lo, hi = self.source.created_after, self.source.created_before
        if (lo and created < lo) or (hi and created >= hi):
            return None, self.quarantine(
                raw,
                "outside_date_window",
                f"created {created.isoformat()} outside [{lo}, {hi})",
                sample=text,
                doc_id=doc_id,
            )
        metadata = {k: v for k, v in record.items() if k not in self.mapped_keys}
        metadata["provenance"] = {
            "source": self.source.name,
            "kind": self.source.kind,
            "uri": raw.uri,
            "locator": raw.locator,
        }
        url = get_field(record, fields.url) if fields else record.get("url")
        language = get_field(record, fields.language) if fields and fields.language else None
        self.counts["written"] += 1
        return make_document(
            id=doc_id,
            text=text,
            domain=self.domain,
            source=self.source.name,
            created=created,
            url=str(url) if url else None,
            language=language or self.source.language,
            metadata=metadata,
        ), None

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
