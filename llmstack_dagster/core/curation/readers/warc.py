"""WARC files: the HTML of each framed response record extracted to main-content text with
trafilatura, or the reason it could not be."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import datetime

from fsspec.core import url_to_fs

from llmstack_dagster.core.curation.readers.base import RawRecord
from llmstack_dagster.core.curation.readers.files import expand_paths, open_binary, read_files
from llmstack_dagster.core.curation.readers.warc_framing import Problem, WarcFramer
from llmstack_dagster.core.curation.sources import WarcSource


def _parse_warc_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _warc_response(source: WarcSource, url: str, index: int, data: bytes) -> RawRecord:
    """One framed response record: extracted text, or why not."""
    import trafilatura
    from warcio.archiveiterator import ArchiveIterator

    locator = f"record:{index}"
    try:
        record = next(iter(ArchiveIterator(io.BytesIO(data))))
        target = record.rec_headers.get_header("WARC-Target-URI", "").strip("<>")
        record_id = record.rec_headers.get_header("WARC-Record-ID", "").strip("<>")
        created = _parse_warc_date(record.rec_headers.get_header("WARC-Date"))
        ctype = record.http_headers.get_header("Content-Type", "") if record.http_headers else ""
        payload = record.content_stream().read()
    except Exception as err:  # warcio raises many types for a malformed record or HTTP header
        detail = f"{url}: warcio cannot parse it: {type(err).__name__}: {err}"
        return RawRecord(url, locator, error="invalid_record", detail=detail, sample=data[:2000])
    if "html" not in ctype.lower():
        return RawRecord(
            url,
            locator,
            error="unsupported_content_type",
            detail=f"{ctype or 'no content type'} at {target}",
            sample=payload,
        )
    html = payload.decode("utf-8", errors="replace")
    try:
        text = trafilatura.extract(
            html,
            url=target or None,
            include_comments=source.include_comments,
            include_tables=source.include_tables,
            deduplicate=False,
        )
    except Exception as err:  # an extractor bug on one page must not end the source
        detail = f"trafilatura failed at {target}: {type(err).__name__}: {err}"
        return RawRecord(url, locator, error="extraction_failed", detail=detail, sample=html)
    if not text:
        return RawRecord(
            url,
            locator,
            error="no_extractable_text",
            detail=f"trafilatura found no main content at {target}",
            sample=html,
        )
    return RawRecord(
        url,
        locator,
        created=created,
        record={"id": record_id or target, "text": text, "url": target, "http_content_type": ctype},
    )


def warc_file(source: WarcSource, url: str) -> Iterator[RawRecord]:
    fs, path = url_to_fs(url)
    with open_binary(fs, path, url) as raw:
        index = 0
        try:
            for item in WarcFramer(raw):
                if isinstance(item, Problem):
                    detail = f"{url}: {item.detail} (after response record:{index})"
                    yield RawRecord(url, item.locator, error=item.reason, detail=detail)
                elif item.warc_type == "response":
                    index += 1
                    yield _warc_response(source, url, index, item.data)
        except OSError as err:
            yield RawRecord(
                url,
                f"after-record:{index}",
                error="unreadable_file",
                detail=f"{url}: read failed after response record:{index}: {err}",
            )


def read_warc(source: WarcSource) -> Iterator[RawRecord]:
    """HTTP responses with HTML from WARC files, extracted to main-content text."""
    urls = expand_paths(source, source.paths)
    yield from read_files(source, urls, lambda url: warc_file(source, url))
