"""The one document schema every stage reads and writes, and the drop-record schema.

Documents travel between stages as Parquet shards with :data:`DOCUMENT_SCHEMA`:

=========  ======================  ========================================================
field      type                    meaning
=========  ======================  ========================================================
id         string, not null        stable and unique: ``<source>/<native id>`` or
                                   ``<source>/sha1:<content hash>`` when the source has none
text       string, not null        the document's text (UTF-8, non-empty)
domain     string, not null        data domain (web, books, code, news, academic, wiki, ...)
source     string, not null        name of the configured source it came from
url        string, nullable        original URL, where known
created    timestamp[us, UTC]      creation or crawl time; temporal alignment filters on it
                                   and dedup keeps the oldest copy by it
language   string, nullable        language code (ISO 639-1, or a programming language)
metadata   string (JSON object)    everything else, including ``provenance``
=========  ======================  ========================================================

Every document a stage does not pass on is written as a row of :data:`DROP_SCHEMA`
(stage, reason, detail), so that per stage ``in = kept + dropped`` always holds.
Ingestion calls its drops "quarantine".
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")

DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("url", pa.string(), nullable=True),
        pa.field("created", TIMESTAMP, nullable=False),
        pa.field("language", pa.string(), nullable=True),
        pa.field("metadata", pa.string(), nullable=False),
    ]
)

DROP_SCHEMA = pa.schema(
    [
        pa.field("stage", pa.string(), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=True),
        pa.field("id", pa.string(), nullable=True),
        pa.field("locator", pa.string(), nullable=True),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=True),
        pa.field("sample", pa.string(), nullable=True),
    ]
)

SAMPLE_CHARS = 200


def make_document(
    *,
    id: str,
    text: str,
    domain: str,
    source: str,
    created: datetime,
    url: str | None = None,
    language: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One row of :data:`DOCUMENT_SCHEMA`; ``created`` is normalised to UTC."""
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return {
        "id": id,
        "text": text,
        "domain": domain,
        "source": source,
        "url": url,
        "created": created.astimezone(UTC),
        "language": language,
        "metadata": json.dumps(metadata or {}, sort_keys=True, ensure_ascii=False, default=str),
    }


def make_drop(
    *,
    stage: str,
    domain: str,
    reason: str,
    source: str | None = None,
    id: str | None = None,
    locator: str | None = None,
    detail: str | None = None,
    sample: str | bytes | None = None,
) -> dict[str, Any]:
    """One row of :data:`DROP_SCHEMA`; ``sample`` is truncated to a short preview."""
    if isinstance(sample, bytes):
        sample = sample[:SAMPLE_CHARS].decode("utf-8", errors="replace")
    elif sample is not None:
        sample = sample[:SAMPLE_CHARS]
    return {
        "stage": stage,
        "domain": domain,
        "source": source,
        "id": id,
        "locator": locator,
        "reason": reason,
        "detail": detail,
        "sample": sample,
    }


def documents_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows to a table with exactly :data:`DOCUMENT_SCHEMA`."""
    return pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA)


def drops_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows to a table with exactly :data:`DROP_SCHEMA`."""
    return pa.Table.from_pylist(rows, schema=DROP_SCHEMA)
