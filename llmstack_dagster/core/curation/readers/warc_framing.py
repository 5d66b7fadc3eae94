"""Framing: a WARC file cut into records.

The file is read as a stream of (decompressed) bytes and cut into records by their
Content-Length, checked against what follows: the blank lines that end a record, a gzip
member that ends (each record of a .warc.gz is its own member), a record header that appears
inside the payload. A record that does not fit is quarantined and reading resumes at the
next record start, so one bad record or a run of garbage never takes the rest of the file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

from llmstack_dagster.core.curation.readers.compressed import CHUNK
from llmstack_dagster.core.curation.readers.warc_bytes import WarcBytes

_NEXT_WARC_LINE = re.compile(rb"\nWARC/\d+\.\d+\r?\n")
_EMBEDDED_RECORD = re.compile(rb"\r?\n\r?\n(WARC/\d+\.\d+\r?\n[!-9;-~]+:)")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_RECORD_PREFIX = re.compile(rb"W(A(R(C(/[\d.]*\r?)?)?)?)?")  # a first line cut short
_MAX_HEADER = 1 << 16


class Problem(NamedTuple):
    """A record or run of bytes that could not be framed: a quarantine reason and where."""

    reason: str
    locator: str
    detail: str


class _Framed(NamedTuple):
    """One whole record: its WARC-Type and its bytes, ending in the blank lines."""

    warc_type: str
    data: bytes


def _next_record(stream: WarcBytes, frm: int) -> int:
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


def _skip_blank_lines(stream: WarcBytes, pos: int) -> int:
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


class WarcFramer:
    """Cuts one WARC file into records and problems, in file order."""

    def __init__(self, raw: BinaryIO) -> None:
        self.stream = WarcBytes(raw)
        self.count = 0  # records met, of every type

    def problem(self, reason: str, what: str, pos: int) -> Problem:
        locator, where = self.stream.where(pos)
        return Problem(reason, locator, f"WARC record {self.count} at {where}: {what}")

    def __iter__(self) -> Iterator[Problem | _Framed]:
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

    def _hole(self, hole: tuple[int, str, str, int]) -> Problem:
        """A cut or corrupt gzip member met between records: a whole record lost if the member
        gave no bytes, else only the member's end (the records in it are complete)."""
        self.stream.holes.remove(hole)
        pos, reason, detail, offset = hole
        if reason == "truncated_gzip" and any(p == pos for p, _ in self.stream.starts):
            reason, detail = "truncated_record", f"a record is lost: {detail}"
        return Problem(reason, f"byte:{offset}", detail)

    def _garbage_before(self, pos: int) -> Iterator[Problem]:
        stream = self.stream
        while stream.garbage and stream.garbage[0][0] <= pos:
            _, offset, size = stream.garbage.pop(0)
            yield Problem(
                "garbage_between_records",
                f"byte:{offset}",
                f"{size} bytes of garbage between WARC records at byte {offset} skipped "
                "(no gzip member starts there); reading resumed at the next member",
            )

    def _not_a_record(self, pos: int) -> Iterator[Problem]:
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

    def _skip_garbage(self, pos: int) -> Iterator[Problem]:
        locator, where = self.stream.where(pos)
        nxt = _next_record(self.stream, pos)
        yield Problem(
            "garbage_between_records",
            locator,
            f"{nxt - pos} bytes of garbage between WARC records at {where} skipped "
            "(no WARC/x.y record header there); reading resumed at the next record",
        )
        return nxt

    def _record(self, pos: int) -> Iterator[Problem | _Framed]:
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
    ) -> Iterator[Problem | _Framed]:
        stream = self.stream
        block_end = header_end + length
        scanned = header_end
        while True:
            stream.fill(min(block_end + 4, stream.end + CHUNK))
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
    ) -> Iterator[Problem]:
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
