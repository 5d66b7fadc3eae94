"""JSON Lines files (plain, gzip or zstd): one record per line, or the reason it is not one."""

from __future__ import annotations

import json
from collections.abc import Iterator

from fsspec.core import url_to_fs

from llmstack_dagster.core.curation.readers.base import RawRecord
from llmstack_dagster.core.curation.readers.compressed import (
    StreamError,
    decoded_chunks,
    split_lines,
)
from llmstack_dagster.core.curation.readers.files import expand_paths, open_binary, read_files
from llmstack_dagster.core.curation.sources import JsonlSource


def _jsonl_record(url: str, line_no: int, line: bytes) -> RawRecord:
    locator = f"line:{line_no}"
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        return RawRecord(url, locator, error="invalid_utf8", detail=str(err), sample=line)
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        return RawRecord(url, locator, error="malformed_json", detail=str(err), sample=text)
    if not isinstance(record, dict):
        return RawRecord(
            url,
            locator,
            error="malformed_json",
            detail="a JSON line must be an object",
            sample=text,
        )
    return RawRecord(url, locator, record=record)


def jsonl_file(url: str) -> Iterator[RawRecord]:
    fs, path = url_to_fs(url)
    with open_binary(fs, path, url) as raw:
        line_no = 0
        try:
            for line_no, line in enumerate(split_lines(decoded_chunks(url, raw)), start=1):  # noqa: B007
                if line.strip():
                    yield _jsonl_record(url, line_no, line)
        except StreamError as err:
            lost = f"; a partial line of {len(err.partial)} bytes is lost" if err.partial else ""
            yield RawRecord(
                url,
                f"after-line:{line_no}",
                error=err.reason,
                detail=f"{url}: {err.detail}{lost}",
                sample=err.partial or None,
            )
        except OSError as err:
            yield RawRecord(
                url,
                f"after-line:{line_no}",
                error="unreadable_file",
                detail=f"{url}: read failed after line {line_no}: {err}; the rest is lost",
            )


def read_jsonl(source: JsonlSource) -> Iterator[RawRecord]:
    yield from read_files(source, expand_paths(source, source.paths), jsonl_file)
