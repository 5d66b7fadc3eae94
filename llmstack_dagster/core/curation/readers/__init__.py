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
from functools import partial

from llmstack_dagster.core.curation.readers.base import RawRecord, SourceError
from llmstack_dagster.core.curation.readers.files import (
    FileRecords,
    expand_paths,
    unreadable_source,
)
from llmstack_dagster.core.curation.readers.huggingface import read_huggingface
from llmstack_dagster.core.curation.readers.jsonl import jsonl_file, read_jsonl
from llmstack_dagster.core.curation.readers.parquet import parquet_file, read_parquet
from llmstack_dagster.core.curation.readers.text_dir import read_text_dir, text_dir_paths, text_file
from llmstack_dagster.core.curation.readers.warc import read_warc, warc_file
from llmstack_dagster.core.curation.sources import (
    HuggingFaceSource,
    JsonlSource,
    ParquetSource,
    SourceBase,
    TextDirSource,
    WarcSource,
)

__all__ = [
    "FileRecords",
    "RawRecord",
    "SourceError",
    "expand_paths",
    "read_source",
    "read_source_file",
    "source_files",
    "unreadable_source",
]


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


def source_files(source: SourceBase) -> list[str]:
    """The files :func:`read_source` reads, in its order (a Hugging Face dataset: one entry,
    its name); a missing file or a glob that matches nothing is a :class:`SourceError`."""
    if isinstance(source, HuggingFaceSource):
        return [source.dataset]
    if isinstance(source, TextDirSource):
        return text_dir_paths(source)[2]
    return expand_paths(source, list(getattr(source, "paths", [])))


def read_source_file(source: SourceBase, file: str) -> FileRecords:
    """The records of one entry of :func:`source_files`, as :func:`read_source` yields them
    (a source none of whose files can be opened: see :func:`unreadable_source`)."""
    if isinstance(source, HuggingFaceSource):
        return FileRecords(source, read_huggingface)
    per_file = {
        JsonlSource: jsonl_file,
        ParquetSource: parquet_file,
        TextDirSource: partial(text_file, source),
        WarcSource: partial(warc_file, source),
    }
    return FileRecords(file, per_file[type(source)])
