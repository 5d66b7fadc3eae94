"""Readers that turn each source kind into a stream of raw records.

A reader yields :class:`RawRecord` objects: either a decoded native record (a dict) or the
reason it could not be decoded (malformed JSON, invalid UTF-8, a truncated archive...). It
never drops anything silently; turning records into documents happens in ``ingest``.
A missing file or an unreachable hub raises :class:`SourceError` naming the source.
"""

from __future__ import annotations

import gzip
import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import fsspec
import pyarrow.parquet as pq
import zstandard
from fsspec.core import url_to_fs

from llmstack_dagster.core.curation.sources import (
    HuggingFaceSource,
    JsonlSource,
    ParquetSource,
    SourceBase,
    TextDirSource,
    WarcSource,
)


class SourceError(RuntimeError):
    """A source cannot be read at all (missing file, unreachable hub); names the source."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"source {source!r}: {message}")
        self.source = source


@dataclass(frozen=True)
class RawRecord:
    """One native record, or the reason it could not be decoded."""

    uri: str
    locator: str
    record: dict[str, Any] | None = None
    error: str | None = None
    detail: str | None = None
    sample: bytes | str | None = None
    created: datetime | None = None


def expand_paths(source: SourceBase, patterns: list[str]) -> list[str]:
    """Expand globs into sorted URLs; a pattern that matches nothing is a missing file."""
    urls: list[str] = []
    for pattern in patterns:
        fs, _ = url_to_fs(pattern)
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        matches = sorted(fs.glob(pattern)) if any(c in pattern for c in "*?[") else []
        if not matches:
            if not fs.exists(pattern):
                raise SourceError(source.name, f"file not found: {pattern}")
            matches = [pattern]
        for match in matches:
            has_scheme = "://" in match
            urls.append(
                match if has_scheme or protocol in ("file", "local") else f"{protocol}://{match}"
            )
    return urls


def _open_text_lines(url: str) -> Iterator[bytes]:
    """Raw lines of a possibly compressed file; compression errors propagate to the caller."""
    with fsspec.open(url, "rb") as raw:
        if url.endswith(".gz"):
            stream: io.BufferedIOBase = gzip.GzipFile(fileobj=raw)
        elif url.endswith(".zst"):
            reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
            stream = io.BufferedReader(reader)
        else:
            stream = raw
        yield from stream


def read_jsonl(source: JsonlSource) -> Iterator[RawRecord]:
    for url in expand_paths(source, source.paths):
        line_no = 0
        try:
            for line_no, line in enumerate(_open_text_lines(url), start=1):  # noqa: B007
                if not line.strip():
                    continue
                locator = f"line:{line_no}"
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError as err:
                    yield RawRecord(
                        url, locator, error="invalid_utf8", detail=str(err), sample=line
                    )
                    continue
                try:
                    record = json.loads(text)
                except json.JSONDecodeError as err:
                    yield RawRecord(
                        url, locator, error="malformed_json", detail=str(err), sample=text
                    )
                    continue
                if not isinstance(record, dict):
                    yield RawRecord(
                        url,
                        locator,
                        error="malformed_json",
                        detail="a JSON line must be an object",
                        sample=text,
                    )
                    continue
                yield RawRecord(url, locator, record=record)
        except (EOFError, gzip.BadGzipFile, zlib.error, zstandard.ZstdError) as err:
            kind = "truncated_zstd" if url.endswith(".zst") else "truncated_gzip"
            yield RawRecord(
                url,
                f"after-line:{line_no}",
                error=kind,
                detail=f"{type(err).__name__}: {err}; the rest of the file is unreadable",
            )
        except FileNotFoundError as err:
            raise SourceError(source.name, f"file not found: {url}") from err


def read_parquet(source: ParquetSource) -> Iterator[RawRecord]:
    for url in expand_paths(source, source.paths):
        try:
            with fsspec.open(url, "rb") as handle:
                row = 0
                for batch in pq.ParquetFile(handle).iter_batches(batch_size=4096):
                    for record in batch.to_pylist():
                        yield RawRecord(url, f"row:{row}", record=record)
                        row += 1
        except FileNotFoundError as err:
            raise SourceError(source.name, f"file not found: {url}") from err


def read_text_dir(source: TextDirSource) -> Iterator[RawRecord]:
    fs, base = url_to_fs(source.path)
    if not fs.isdir(base):
        raise SourceError(source.name, f"folder not found: {source.path}")
    for path in sorted(fs.glob(f"{base.rstrip('/')}/{source.pattern}")):
        rel = path[len(base.rstrip("/")) + 1 :]
        data = fs.cat_file(path)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            yield RawRecord(path, f"file:{rel}", error="invalid_utf8", detail=str(err), sample=data)
            continue
        yield RawRecord(path, f"file:{rel}", record={"id": rel, "text": text})


def read_warc(source: WarcSource) -> Iterator[RawRecord]:
    """HTTP responses with HTML from WARC files, extracted to main-content text."""
    import trafilatura
    from warcio.archiveiterator import ArchiveIterator
    from warcio.exceptions import ArchiveLoadFailed

    for url in expand_paths(source, source.paths):
        index = 0
        try:
            with fsspec.open(url, "rb") as handle:
                for record in ArchiveIterator(handle):
                    if record.rec_type != "response":
                        continue
                    index += 1
                    target = record.rec_headers.get_header("WARC-Target-URI", "").strip("<>")
                    record_id = record.rec_headers.get_header("WARC-Record-ID", "").strip("<>")
                    locator = f"record:{index}"
                    created = _parse_warc_date(record.rec_headers.get_header("WARC-Date"))
                    ctype = (
                        record.http_headers.get_header("Content-Type", "")
                        if record.http_headers
                        else ""
                    )
                    payload = record.content_stream().read()
                    if "html" not in ctype.lower():
                        yield RawRecord(
                            url,
                            locator,
                            error="unsupported_content_type",
                            detail=f"{ctype or 'no content type'} at {target}",
                            sample=payload,
                        )
                        continue
                    html = payload.decode("utf-8", errors="replace")
                    text = trafilatura.extract(
                        html,
                        url=target or None,
                        include_comments=source.include_comments,
                        include_tables=source.include_tables,
                        deduplicate=False,
                    )
                    if not text:
                        yield RawRecord(
                            url,
                            locator,
                            error="no_extractable_text",
                            detail=f"trafilatura found no main content at {target}",
                            sample=html,
                        )
                        continue
                    yield RawRecord(
                        url,
                        locator,
                        created=created,
                        record={
                            "id": record_id or target,
                            "text": text,
                            "url": target,
                            "http_content_type": ctype,
                        },
                    )
        except (ArchiveLoadFailed, EOFError, zlib.error) as err:
            yield RawRecord(
                url,
                f"after-record:{index}",
                error="truncated_gzip",
                detail=f"{type(err).__name__}: {err}",
            )
        except FileNotFoundError as err:
            raise SourceError(source.name, f"file not found: {url}") from err


def _parse_warc_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def read_huggingface(source: HuggingFaceSource) -> Iterator[RawRecord]:
    """Stream a hub (or local builder) dataset; connection failures name the source."""
    import datasets

    where = source.dataset + (f"/{source.config_name}" if source.config_name else "")
    try:
        stream = datasets.load_dataset(
            source.dataset,
            source.config_name,
            split=source.split,
            streaming=True,
            revision=source.revision,
            data_dir=source.data_dir,
            data_files=source.data_files,
        )
        iterator = iter(stream)
    except Exception as err:  # the hub raises many types: connection, offline, not found
        raise SourceError(
            source.name,
            f"cannot open Hugging Face dataset {where!r} (split {source.split!r}): "
            f"{type(err).__name__}: {err}. Is the hub reachable (HF_HUB_OFFLINE unset, network "
            "up) and the dataset name right?",
        ) from err
    row = 0
    while True:
        try:
            record = next(iterator)
        except StopIteration:
            return
        except Exception as err:
            raise SourceError(
                source.name, f"streaming {where!r} failed after {row} rows: {err}"
            ) from err
        yield RawRecord(f"hf://{where}/{source.split}", f"row:{row}", record=dict(record))
        row += 1


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
