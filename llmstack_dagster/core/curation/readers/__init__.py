"""Readers that turn each source kind into a stream of raw records.

A reader yields :class:`RawRecord` objects: either a decoded native record (a dict) or the
reason it could not be decoded (malformed JSON, invalid UTF-8, a truncated archive, a file
that is not a regular file...), with the file and a locator (line, row, byte offset). It never
drops anything silently and never opens a non-regular file (a FIFO would block forever);
turning records into documents happens in ``ingest``. A source that cannot be read at all (a
missing file, a glob that matches nothing, no readable file, an unreachable hub) raises
:class:`SourceError` naming the source and the file.

Reasons a reader gives: ``invalid_utf8``, ``malformed_json``, ``truncated_gzip``,
``corrupt_gzip``, ``truncated_zstd``, ``corrupt_zstd``, ``unreadable_file``,
``not_a_regular_file``, ``corrupt_parquet``, ``truncated_record``, ``invalid_record_length``,
``invalid_record_header``, ``invalid_record``, ``garbage_between_records``,
``unsupported_content_type``, ``no_extractable_text``, ``extraction_failed``.

Modules: ``files`` (globs, file checks before opening, the per-file loop), ``compressed``
(gzip and zstd with frame checks, lines), one reader per source kind (``jsonl``,
``parquet``, ``text_dir``, ``warc``, ``huggingface``), WARC framing in ``warc_framing`` over
the byte layer ``warc_bytes``, and the record and error types in ``base``.
"""

from __future__ import annotations

from collections.abc import Iterator

from llmstack_dagster.core.curation.readers.base import RawRecord, SourceError
from llmstack_dagster.core.curation.readers.files import expand_paths
from llmstack_dagster.core.curation.readers.huggingface import read_huggingface
from llmstack_dagster.core.curation.readers.jsonl import read_jsonl
from llmstack_dagster.core.curation.readers.parquet import read_parquet
from llmstack_dagster.core.curation.readers.text_dir import read_text_dir
from llmstack_dagster.core.curation.readers.warc import read_warc
from llmstack_dagster.core.curation.sources import (
    HuggingFaceSource,
    JsonlSource,
    ParquetSource,
    SourceBase,
    TextDirSource,
    WarcSource,
)

__all__ = ["RawRecord", "SourceError", "expand_paths", "read_source"]


def read_source(source: SourceBase) -> Iterator[RawRecord]:
    """Dispatch on the source kind."""
    readers = {
        JsonlSource: read_jsonl,
        ParquetSource: read_parquet,
        TextDirSource: read_text_dir,
        WarcSource: read_warc,
        HuggingFaceSource: read_huggingface,
    }
    return readers[type(source)](source)
