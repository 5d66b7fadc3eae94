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
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import zlib
from bisect import bisect_right
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard
from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from llmstack_dagster.core.curation.sources import (
    HuggingFaceSource,
    JsonlSource,
    ParquetSource,
    SourceBase,
    TextDirSource,
    WarcSource,
)

_CHUNK = 1 << 16  # bytes read from a file at a time
_MAX_OUT = 8 << 20  # decompressed bytes produced at a time
_GZIP_MAGIC = b"\x1f\x8b\x08"
_GLOB_CHARS = "*?["


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


class _BadFile(Exception):
    """A file that cannot be opened; becomes one quarantine row."""

    def __init__(self, uri: str, reason: str, detail: str, locator: str = "file") -> None:
        super().__init__(f"{uri}: {reason}: {detail}")
        self.uri, self.reason, self.detail, self.locator = uri, reason, detail, locator


class _StreamError(Exception):
    """A compressed stream that is cut or corrupt; ``partial`` is the unfinished last line."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail
        self.partial = b""


# --- paths and files ---------------------------------------------------------------------


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in _GLOB_CHARS)


def _no_match_message(fs: AbstractFileSystem, pattern: str) -> str:
    """Names the folder a glob starts from and the part that matched nothing."""
    stem = pattern[: min(pattern.find(c) for c in _GLOB_CHARS if c in pattern)]
    folder = stem.rsplit("/", 1)[0] if "/" in stem else "."
    rest = pattern[len(folder) + 1 :] if folder != "." else pattern
    if not fs.isdir(folder):
        return f"folder not found: {folder!r} (pattern {rest!r})"
    return f"no file in folder {folder!r} matches pattern {rest!r}"


def _matches(source: SourceBase, fs: AbstractFileSystem, pattern: str) -> list[str]:
    matches = sorted(fs.glob(pattern)) if _is_glob(pattern) else []
    if matches:
        return matches
    if fs.exists(pattern) or (_is_local(fs) and os.path.islink(_local(fs, pattern))):
        return [pattern]  # a plain path (or a name holding a glob character); links reported later
    if _is_glob(pattern):
        raise SourceError(source.name, _no_match_message(fs, pattern))
    raise SourceError(source.name, f"file not found: {pattern}")


def expand_paths(source: SourceBase, patterns: list[str]) -> list[str]:
    """Expand globs into sorted URLs (every match, bad entries included, for the readers to
    report); a missing file or a glob that matches nothing is a :class:`SourceError`."""
    urls: list[str] = []
    for pattern in patterns:
        fs, _ = url_to_fs(pattern)
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        for match in _matches(source, fs, pattern):
            has_scheme = "://" in match
            urls.append(
                match if has_scheme or protocol in ("file", "local") else f"{protocol}://{match}"
            )
    return urls


def _is_local(fs: AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def _local(fs: AbstractFileSystem, path: str) -> str:
    return str(fs._strip_protocol(path))


def _check_local(path: str, uri: str, locator: str = "file") -> None:
    """Raise :class:`_BadFile` unless ``path`` is a regular file (never opens it)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as err:
        if os.path.islink(path):
            detail = f"dangling symbolic link to {os.readlink(path)!r}"
            raise _BadFile(uri, "unreadable_file", detail, locator) from err
        raise _BadFile(uri, "unreadable_file", f"file vanished: {err}", locator) from err
    except OSError as err:
        raise _BadFile(uri, "unreadable_file", f"cannot stat: {err}", locator) from err
    if stat.S_ISDIR(mode):
        raise _BadFile(uri, "not_a_regular_file", "is a directory", locator)
    if not stat.S_ISREG(mode):
        kind = "FIFO" if stat.S_ISFIFO(mode) else "socket, device or other special file"
        raise _BadFile(uri, "not_a_regular_file", f"is a {kind}; not opened", locator)


def _check_remote(fs: AbstractFileSystem, path: str, uri: str, locator: str = "file") -> None:
    try:
        kind = fs.info(path).get("type")
    except OSError as err:
        raise _BadFile(uri, "unreadable_file", f"{type(err).__name__}: {err}", locator) from err
    if kind != "file":
        raise _BadFile(uri, "not_a_regular_file", f"is a {kind or 'non-file entry'}", locator)


@contextmanager
def _open_binary(
    fs: AbstractFileSystem, path: str, uri: str, locator: str = "file"
) -> Iterator[BinaryIO]:
    """A regular file opened for reading; anything else raises :class:`_BadFile`."""
    if _is_local(fs):
        local = _local(fs, path)
        _check_local(local, uri, locator)
        try:  # non-blocking open, then fstat: a file swapped for a FIFO cannot block us
            fd = os.open(local, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as err:
            raise _BadFile(uri, "unreadable_file", f"cannot open: {err}", locator) from err
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise _BadFile(uri, "not_a_regular_file", "is not a regular file; not read", locator)
        os.set_blocking(fd, True)
        handle: BinaryIO = os.fdopen(fd, "rb")
    else:
        _check_remote(fs, path, uri, locator)
        try:
            handle = fs.open(path, "rb")
        except OSError as err:
            raise _BadFile(uri, "unreadable_file", f"cannot open: {err}", locator) from err
    with handle:
        yield handle


def _read_files(
    source: SourceBase, items: list[Any], read_one: Callable[[Any], Iterator[RawRecord]]
) -> Iterator[RawRecord]:
    """Every file's records; a file that cannot be opened is one quarantine row, and a source
    none of whose files can be opened is a :class:`SourceError` naming them."""
    failures: list[str] = []
    opened = 0
    for item in items:
        produced = False
        try:
            for raw in read_one(item):
                produced = True
                yield raw
            opened += 1
        except _BadFile as bad:
            opened += produced
            failures.append(f"{bad.uri} ({bad.reason}: {bad.detail})")
            yield RawRecord(
                bad.uri, bad.locator, error=bad.reason, detail=f"{bad.uri}: {bad.detail}"
            )
    if failures and not opened:
        more = f"; and {len(failures) - 5} more" if len(failures) > 5 else ""
        raise SourceError(source.name, "no file could be read: " + "; ".join(failures[:5]) + more)


# --- decompression -----------------------------------------------------------------------


class _Input:
    """Bytes read ahead from a binary file, with the file offset of the first one."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.data, self.pos = raw, b"", 0

    def more(self) -> bool:
        chunk = self.raw.read(_CHUNK)
        self.data += chunk
        return bool(chunk)

    def ensure(self, n: int) -> bool:
        """Try to hold ``n`` bytes; True if any byte is left."""
        while len(self.data) < n and self.more():
            pass
        return bool(self.data)

    def drop(self, n: int) -> None:
        self.data, self.pos = self.data[n:], self.pos + n


def _plain_chunks(raw: BinaryIO) -> Iterator[bytes]:
    yield from iter(lambda: raw.read(_CHUNK), b"")


def _gzip_chunks(raw: BinaryIO) -> Iterator[bytes]:
    """Decompressed bytes of every gzip member; a cut or corrupt stream raises _StreamError."""
    src = _Input(raw)
    while src.ensure(1):
        zeros = len(src.data) - len(src.data.lstrip(b"\0"))  # padding, as gzip(1) allows
        if zeros:
            src.drop(zeros)
            continue
        start, d = src.pos, zlib.decompressobj(31)
        while not d.eof:
            if not src.data and not src.more():
                raise _StreamError(
                    "truncated_gzip",
                    f"the file ends at byte {src.pos}, inside the gzip member that starts at "
                    f"byte {start}; the rest of the file is lost",
                )
            try:
                out = d.decompress(src.data, _MAX_OUT)
            except zlib.error as err:
                raise _StreamError(
                    "corrupt_gzip",
                    f"corrupt gzip data in the member that starts at byte {start} ({err}); "
                    "the rest of the file is unreadable",
                ) from err
            src.drop(len(src.data) - len(d.unused_data if d.eof else d.unconsumed_tail))
            if out:
                yield out


def _zstd_chunks(raw: BinaryIO) -> Iterator[bytes]:
    """Decompressed bytes of every zstd frame; a frame cut short raises _StreamError."""
    pos = start = 0
    frame = None
    for data in _plain_chunks(raw):
        while data:
            if frame is None:
                frame, start = zstandard.ZstdDecompressor().decompressobj(), pos
            try:
                out = frame.decompress(data)
            except zstandard.ZstdError as err:
                raise _StreamError(
                    "corrupt_zstd",
                    f"corrupt zstd data in the frame that starts at byte {start} ({err}); "
                    "the rest of the file is unreadable",
                ) from err
            if out:
                yield out
            rest = frame.unused_data if frame.eof else b""
            pos += len(data) - len(rest)
            data = rest
            if frame.eof:
                frame = None
    if frame is not None:
        raise _StreamError(
            "truncated_zstd",
            f"the file ends at byte {pos}, inside the zstd frame that starts at byte {start}; "
            "the rest of the file is lost",
        )


def _decoded_chunks(url: str, raw: BinaryIO) -> Iterator[bytes]:
    if url.endswith(".gz"):
        return _gzip_chunks(raw)
    if url.endswith(".zst"):
        return _zstd_chunks(raw)
    return _plain_chunks(raw)


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Lines with their endings; an unfinished last line before a cut is not a line."""
    tail = bytearray()
    try:
        for chunk in chunks:
            start = 0
            while (end := chunk.find(b"\n", start)) >= 0:
                if tail:
                    tail += chunk[start : end + 1]
                    yield bytes(tail)
                    tail.clear()
                else:
                    yield chunk[start : end + 1]
                start = end + 1
            tail += chunk[start:]
    except _StreamError as err:
        err.partial = bytes(tail)
        raise
    if tail:
        yield bytes(tail)


# --- JSON Lines --------------------------------------------------------------------------


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


def _jsonl_file(url: str) -> Iterator[RawRecord]:
    fs, path = url_to_fs(url)
    with _open_binary(fs, path, url) as raw:
        line_no = 0
        try:
            for line_no, line in enumerate(_lines(_decoded_chunks(url, raw)), start=1):  # noqa: B007
                if line.strip():
                    yield _jsonl_record(url, line_no, line)
        except _StreamError as err:
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
    yield from _read_files(source, expand_paths(source, source.paths), _jsonl_file)


# --- Parquet -----------------------------------------------------------------------------


def _parquet_error(url: str, err: Exception) -> _BadFile:
    if isinstance(err, OSError) and err.errno is not None:
        return _BadFile(url, "unreadable_file", f"cannot open: {err}")
    return _BadFile(url, "corrupt_parquet", f"{type(err).__name__}: {err}")


@contextmanager
def _open_parquet(url: str) -> Iterator[pq.ParquetFile]:
    """Local files by path (Arrow's own reader); others through fsspec without pre-buffering,
    whose background reads through a Python file abort short processes at exit
    (apache/arrow#34314)."""
    fs, path = url_to_fs(url)
    with ExitStack() as stack:
        try:
            if _is_local(fs):
                local = _local(fs, path)
                _check_local(local, url)
                parquet = pq.ParquetFile(local)
            else:
                handle = stack.enter_context(_open_binary(fs, path, url))
                parquet = pq.ParquetFile(handle, pre_buffer=False)
        except (OSError, pa.ArrowException) as err:
            raise _parquet_error(url, err) from err
        stack.callback(parquet.close)
        yield parquet


def _row_group(parquet: pq.ParquetFile, url: str, group: int, first: int) -> Iterator[RawRecord]:
    """One row group's rows; a group that fails to decode is one quarantine row."""
    done = 0
    try:
        for batch in parquet.iter_batches(batch_size=4096, row_groups=[group]):
            for record in batch.to_pylist():
                yield RawRecord(url, f"row:{first + done}", record=record)
                done += 1
    except (OSError, pa.ArrowException) as err:
        rows = parquet.metadata.row_group(group).num_rows
        yield RawRecord(
            url,
            f"row:{first + done}",
            error="corrupt_parquet",
            detail=(
                f"{url}: row group {group} (rows {first}..{first + rows - 1}) fails after "
                f"{done} rows, {rows - done} rows lost: {type(err).__name__}: {err}"
            ),
        )


def _parquet_file(url: str) -> Iterator[RawRecord]:
    with _open_parquet(url) as parquet:
        first = 0
        for group in range(parquet.num_row_groups):
            yield from _row_group(parquet, url, group, first)
            first += parquet.metadata.row_group(group).num_rows


def read_parquet(source: ParquetSource) -> Iterator[RawRecord]:
    yield from _read_files(source, expand_paths(source, source.paths), _parquet_file)


# --- folders of text files ---------------------------------------------------------------


def _text_file(fs: AbstractFileSystem, base: str, path: str) -> Iterator[RawRecord]:
    rel = path[len(base) + 1 :]
    locator = f"file:{rel}"
    with _open_binary(fs, path, path, locator) as handle:
        try:
            data = handle.read()
        except OSError as err:
            raise _BadFile(path, "unreadable_file", f"read failed: {err}", locator) from err
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        yield RawRecord(path, locator, error="invalid_utf8", detail=str(err), sample=data)
        return
    yield RawRecord(path, locator, record={"id": rel, "text": text})


def read_text_dir(source: TextDirSource) -> Iterator[RawRecord]:
    fs, base = url_to_fs(source.path)
    if not fs.isdir(base):
        raise SourceError(source.name, f"folder not found: {source.path}")
    base = base.rstrip("/")
    paths = [p for p in sorted(fs.glob(f"{base}/{source.pattern}")) if p.rstrip("/") != base]
    if not paths:
        raise SourceError(
            source.name, f"no file in folder {source.path!r} matches pattern {source.pattern!r}"
        )
    yield from _read_files(source, paths, lambda path: _text_file(fs, base, path))


# --- WARC framing ------------------------------------------------------------------------
# A WARC file is read as a stream of (decompressed) bytes and cut into records by their
# Content-Length, checked against what follows: the blank lines that end a record, a gzip
# member that ends (each record of a .warc.gz is its own member), a record header that appears
# inside the payload. A record that does not fit is quarantined and reading resumes at the
# next record start, so one bad record or a run of garbage never takes the rest of the file.

_WARC_LINE = re.compile(rb"WARC/\d+\.\d+\r?\n")
_NEXT_WARC_LINE = re.compile(rb"\nWARC/\d+\.\d+\r?\n")
_EMBEDDED_RECORD = re.compile(rb"\r?\n\r?\n(WARC/\d+\.\d+\r?\n[!-9;-~]+:)")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_RECORD_PREFIX = re.compile(rb"W(A(R(C(/[\d.]*\r?)?)?)?)?")  # a first line cut short
_MAX_HEADER = 1 << 16


class _Piece(NamedTuple):
    """What the byte layer delivers: data, a gzip member start, a hole or skipped garbage."""

    kind: str  # "data" | "start" | "hole" | "garbage"
    data: bytes = b""
    offset: int = 0
    size: int = 0
    reason: str = ""
    detail: str = ""


class _Problem(NamedTuple):
    reason: str
    locator: str
    detail: str


class _Framed(NamedTuple):
    warc_type: str
    data: bytes


def _skip_to_magic(src: _Input, first: int = 0) -> int:
    """Drop bytes up to the next gzip magic (or to the end); the number dropped."""
    skipped = 0
    while True:
        found = src.data.find(_GZIP_MAGIC, first)
        if found >= 0:
            src.drop(found)
            return skipped + found
        keep = max(first, len(src.data) - len(_GZIP_MAGIC) + 1)
        skipped += keep
        src.drop(keep)
        first = 0
        if not src.more():
            skipped += len(src.data)
            src.drop(len(src.data))
            return skipped


def _gzip_member(src: _Input) -> Iterator[_Piece]:
    start, d = src.pos, zlib.decompressobj(31)
    yield _Piece("start", offset=start)
    while not d.eof:
        if not src.data and not src.more():
            detail = f"the file ends at byte {src.pos}, inside the gzip member at byte {start}"
            yield _Piece("hole", offset=start, reason="truncated_gzip", detail=detail)
            return
        try:
            out = d.decompress(src.data, _MAX_OUT)
        except zlib.error as err:
            at = src.pos
            skipped = _skip_to_magic(src, first=1 if at == start else 0)
            near = f" near byte {at}" if at != start else ""
            detail = (
                f"the gzip member at byte {start} is corrupt{near} ({err}); "
                f"{skipped} bytes skipped to the next gzip member"
            )
            yield _Piece("hole", offset=start, reason="corrupt_gzip", detail=detail)
            return
        src.drop(len(src.data) - len(d.unused_data if d.eof else d.unconsumed_tail))
        if out:
            yield _Piece("data", out)


def _warc_pieces(raw: BinaryIO) -> tuple[bool, Iterator[_Piece]]:
    """Whether the file is gzip (sniffed, like warcio), and its pieces."""
    src = _Input(raw)
    head = src.data[:3] if src.ensure(3) else b""
    if head and _GZIP_MAGIC.startswith(head):
        return True, _gzip_pieces(src)
    return False, _plain_pieces(src)


def _plain_pieces(src: _Input) -> Iterator[_Piece]:
    yield _Piece("start", offset=0)
    while src.data:
        yield _Piece("data", src.data)
        src.drop(len(src.data))
        src.more()


def _gzip_pieces(src: _Input) -> Iterator[_Piece]:
    while src.ensure(len(_GZIP_MAGIC)):
        if src.data.startswith(_GZIP_MAGIC) or _GZIP_MAGIC.startswith(src.data):
            yield from _gzip_member(src)  # (a member cut inside its magic is a cut member)
        else:
            at = src.pos
            yield _Piece("garbage", offset=at, size=_skip_to_magic(src))


class _WarcBytes:
    """The (decompressed) bytes of one WARC file pulled on demand, by absolute position, with
    the positions where gzip members start, where a member was cut or is corrupt (holes), and
    the garbage skipped between members."""

    def __init__(self, raw: BinaryIO) -> None:
        self.gz, self._pieces = _warc_pieces(raw)
        self.buf = bytearray()
        self.base = 0
        self.done = False
        self.starts: list[tuple[int, int]] = []  # (position, file offset)
        self.holes: list[tuple[int, str, str, int]] = []  # (position, reason, detail, offset)
        self.garbage: list[tuple[int, int, int]] = []  # (position, file offset, bytes)

    @property
    def end(self) -> int:
        return self.base + len(self.buf)

    def pull(self) -> bool:
        """Take the next piece; False once the file is exhausted."""
        piece = next(self._pieces, None)
        if piece is None:
            self.done = True
            return False
        if piece.kind == "data":
            self.buf += piece.data
        elif piece.kind == "start":
            self.starts.append((self.end, piece.offset))
        elif piece.kind == "hole":
            self.holes.append((self.end, piece.reason, piece.detail, piece.offset))
        else:
            self.garbage.append((self.end, piece.offset, piece.size))
        return True

    def fill(self, upto: int) -> None:
        while self.end < upto and self.pull():
            pass

    def get(self, lo: int, hi: int) -> bytes:
        return bytes(self.buf[lo - self.base : hi - self.base])

    def byte(self, pos: int) -> int | None:
        """The byte at ``pos`` (reading on as needed), or None at the end of the file."""
        self.fill(pos + 1)
        return self.buf[pos - self.base] if pos < self.end else None

    def release(self, upto: int) -> None:
        """Forget the bytes before ``upto``."""
        new_base = min(upto, self.end)
        if new_base > self.base:
            del self.buf[: new_base - self.base]
            self.base = new_base
        while len(self.starts) > 1 and self.starts[1][0] <= self.base:
            self.starts.pop(0)

    def hole_at(self, pos: int) -> tuple[int, str, str, int] | None:
        return next((h for h in self.holes if h[0] == pos), None)

    def first_break(self, lo: int, hi: int) -> tuple[int, str] | None:
        """The first hole, or gzip member starting with a WARC header, strictly inside
        (lo, hi): where a record that spans it must have ended."""
        marks = [(p, "member") for p, _ in self.starts if lo < p < hi and self.starts_record(p)]
        marks += [(p, "hole") for p, *_ in self.holes if lo < p < hi]  # after: fills add holes
        return min(marks) if marks else None

    def starts_record(self, pos: int) -> bool:
        self.fill(pos + 16)
        return _WARC_LINE.match(self.buf, pos - self.base) is not None

    def where(self, pos: int) -> tuple[str, str]:
        """A locator and a phrase for ``pos``: the file offset (of its gzip member)."""
        if not self.gz or not self.starts:
            return f"byte:{pos}", f"byte {pos}"
        index = bisect_right([p for p, _ in self.starts], pos) - 1
        member_pos, offset = self.starts[max(index, 0)]
        if member_pos == pos:
            return f"byte:{offset}", f"byte {offset}"
        inner = pos - member_pos
        return f"byte:{offset}+{inner}", f"uncompressed byte {inner} of the gzip member at {offset}"


def _next_record(stream: _WarcBytes, frm: int) -> int:
    """Where the next record starts at or after ``frm``: a line ``WARC/x.y``, a gzip member
    starting with one, or a hole; the end of the file if none."""
    scan = frm
    while True:
        marks = [p for p, _ in stream.starts if p >= frm and stream.starts_record(p)]
        marks += [p for p, *_ in stream.holes if p >= frm]
        found = _NEXT_WARC_LINE.search(stream.buf, max(scan - 1 - stream.base, 0))
        if found:
            marks.append(stream.base + found.start() + 1)
        if marks:
            return min(marks)
        if stream.done:
            return stream.end
        scan = max(stream.end - 32, frm)
        stream.release(scan - 1)  # a long run of garbage is not kept in memory
        stream.pull()


def _skip_blank_lines(stream: _WarcBytes, pos: int) -> int:
    while stream.hole_at(pos) is None and stream.byte(pos) in (10, 13):
        pos += 1
    return pos


def _parse_header(header: bytes) -> tuple[str, int | None]:
    """WARC-Type and Content-Length (None if missing or not a number)."""
    fields: dict[str, str] = {}
    for line in header.decode("latin-1").splitlines()[1:]:
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip().lower()] = value.strip()
    length = fields.get("content-length", "")
    return fields.get("warc-type", ""), int(length) if length.isdigit() else None


class _WarcFramer:
    """Cuts one WARC file into records and problems, in file order."""

    def __init__(self, raw: BinaryIO) -> None:
        self.stream = _WarcBytes(raw)
        self.count = 0  # records met, of every type

    def problem(self, reason: str, what: str, pos: int) -> _Problem:
        locator, where = self.stream.where(pos)
        return _Problem(reason, locator, f"WARC record {self.count} at {where}: {what}")

    def __iter__(self) -> Iterator[_Problem | _Framed]:
        stream, pos = self.stream, 0
        while True:
            stream.release(pos)
            pos = _skip_blank_lines(stream, pos)
            yield from self._garbage_before(pos)
            hole = stream.hole_at(pos)
            if hole is not None:
                yield self._hole(hole)
                continue
            if stream.byte(pos) is None:
                break
            if not stream.starts_record(pos):
                pos = yield from self._not_a_record(pos)
                continue
            self.count += 1
            pos = yield from self._record(pos)
        yield from self._garbage_before(stream.end + 1)

    def _hole(self, hole: tuple[int, str, str, int]) -> _Problem:
        """A cut or corrupt gzip member met between records: a whole record lost if the member
        gave no bytes, else only the member's end (the records in it are complete)."""
        self.stream.holes.remove(hole)
        pos, reason, detail, offset = hole
        if reason == "truncated_gzip" and any(p == pos for p, _ in self.stream.starts):
            reason, detail = "truncated_record", f"a record is lost: {detail}"
        return _Problem(reason, f"byte:{offset}", detail)

    def _garbage_before(self, pos: int) -> Iterator[_Problem]:
        stream = self.stream
        while stream.garbage and stream.garbage[0][0] <= pos:
            _, offset, size = stream.garbage.pop(0)
            yield _Problem(
                "garbage_between_records",
                f"byte:{offset}",
                f"{size} bytes of garbage between WARC records at byte {offset} skipped "
                "(no gzip member starts there); reading resumed at the next member",
            )

    def _not_a_record(self, pos: int) -> Iterator[_Problem]:
        """Garbage, or the first bytes of a record cut short by a hole or the end of file."""
        stream = self.stream
        stops = [p for p, *_ in stream.holes if p > pos] + [stream.end] * stream.done
        stop = min(stops, default=None)
        if stop is None or not _RECORD_PREFIX.fullmatch(stream.get(pos, stop)):
            return (yield from self._skip_garbage(pos))
        self.count += 1
        brk = (stop, "hole") if stream.hole_at(stop) else None
        yield self.problem(*self._cut(brk, "in its first line"), pos)
        return stop

    def _skip_garbage(self, pos: int) -> Iterator[_Problem]:
        locator, where = self.stream.where(pos)
        nxt = _next_record(self.stream, pos)
        yield _Problem(
            "garbage_between_records",
            locator,
            f"{nxt - pos} bytes of garbage between WARC records at {where} skipped "
            "(no WARC/x.y record header there); reading resumed at the next record",
        )
        return nxt

    def _record(self, pos: int) -> Iterator[_Problem | _Framed]:
        """Frame the record at ``pos``; the position after it (or where reading resumes)."""
        stream = self.stream
        found = None
        while found is None:
            found = _HEADER_END.search(stream.buf, pos - stream.base)
            if found is None and (stream.end - pos > _MAX_HEADER or not stream.pull()):
                break
        header_end = stream.base + found.end() if found else stream.end
        brk = stream.first_break(pos, header_end + (found is None))
        if brk is not None or found is None:
            at = brk[0] if brk else stream.end
            if found is None and not brk and stream.end - pos > _MAX_HEADER:
                yield self.problem("invalid_record_header", "no end of header in 64 KiB", pos)
                return _next_record(stream, pos + 1)
            yield self.problem(*self._cut(brk, "in its header"), pos)
            return at
        warc_type, length = _parse_header(stream.get(pos, header_end))
        if length is None:
            yield self.problem("invalid_record_length", "no valid Content-Length header", pos)
            return _next_record(stream, header_end)
        return (yield from self._block(pos, header_end, warc_type, length))

    def _cut(self, brk: tuple[int, str] | None, where: str) -> tuple[str, str]:
        """Reason and phrase for a record that stops short ``where`` (taking the hole)."""
        if brk is None:
            return "truncated_record", f"the file ends {where}"
        if brk[1] == "hole":
            hole = self.stream.hole_at(brk[0])
            assert hole is not None
            self.stream.holes.remove(hole)
            reason = "corrupt_gzip" if hole[1] == "corrupt_gzip" else "truncated_record"
            return reason, f"cut {where}: {hole[2]}"
        return "truncated_record", f"its gzip member ends {where}; the next starts a new record"

    def _block(
        self, pos: int, header_end: int, warc_type: str, length: int
    ) -> Iterator[_Problem | _Framed]:
        stream = self.stream
        block_end = header_end + length
        scanned = header_end
        while True:
            stream.fill(min(block_end + 4, stream.end + _CHUNK))
            limit = min(stream.end, block_end)
            brk = stream.first_break(pos, limit + (limit < block_end))
            embedded = _EMBEDDED_RECORD.search(
                stream.buf, max(scanned - 64, header_end) - stream.base, limit - stream.base
            )
            if brk is not None or embedded is not None:
                return (yield from self._short(pos, brk, embedded, length))
            scanned = limit
            if stream.end >= block_end + 4 or stream.done:
                break
        if stream.end < block_end:
            reason = "invalid_record_length" if stream.gz else "truncated_record"
            got = stream.end - header_end
            yield self.problem(reason, f"Content-Length {length} but the file ends {got} in", pos)
            return stream.end
        marks = [p for p, *_ in stream.holes if p >= block_end]
        marks += [p for p, _ in stream.starts if p >= block_end]
        trailer = stream.get(block_end, min([block_end + 2, *marks]))
        if not (trailer.startswith(b"\n") or b"\r\n".startswith(trailer)):
            what = f"Content-Length {length} does not end at the record's blank lines"
            yield self.problem("invalid_record_length", what, pos)
            return _next_record(stream, header_end)
        yield _Framed(warc_type, stream.get(pos, block_end) + b"\r\n\r\n")
        return block_end

    def _short(
        self, pos: int, brk: tuple[int, str] | None, embedded: re.Match[bytes] | None, length: int
    ) -> Iterator[_Problem]:
        """A record whose declared block runs into a hole, a new gzip member or a header."""
        embedded_at = self.stream.base + embedded.start(1) if embedded else None
        if brk is not None and (embedded_at is None or brk[0] <= embedded_at):
            if brk[1] == "hole":
                yield self.problem(*self._cut(brk, f"before its Content-Length {length}"), pos)
                return brk[0]
            what = (
                f"its gzip member ends before its Content-Length {length}; the next member "
                "starts a new record"
            )
            yield self.problem("invalid_record_length", what, pos)
            return brk[0]
        assert embedded_at is not None
        _, where = self.stream.where(embedded_at)
        what = f"Content-Length {length} runs into the next record header at {where}"
        yield self.problem("invalid_record_length", what, pos)
        return embedded_at


# --- WARC documents ----------------------------------------------------------------------


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


def _warc_file(source: WarcSource, url: str) -> Iterator[RawRecord]:
    fs, path = url_to_fs(url)
    with _open_binary(fs, path, url) as raw:
        index = 0
        try:
            for item in _WarcFramer(raw):
                if isinstance(item, _Problem):
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
    yield from _read_files(source, urls, lambda url: _warc_file(source, url))


def _parse_warc_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


# --- Hugging Face ------------------------------------------------------------------------


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
