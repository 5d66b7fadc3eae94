"""The byte layer under WARC framing: a file's gzip members (sniffed, like warcio) or
plain bytes as pieces, and :class:`WarcBytes`, which holds them by absolute position."""

from __future__ import annotations

import re
import zlib
from bisect import bisect_right
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

from llmstack_dagster.core.curation.readers.compressed import MAX_OUT, ReadAhead

_GZIP_MAGIC = b"\x1f\x8b\x08"
_WARC_LINE = re.compile(rb"WARC/\d+\.\d+\r?\n")


class _Piece(NamedTuple):
    """What the byte layer delivers: data, a gzip member start, a hole or skipped garbage."""

    kind: str  # "data" | "start" | "hole" | "garbage"
    data: bytes = b""
    offset: int = 0
    size: int = 0
    reason: str = ""
    detail: str = ""


def _skip_to_magic(src: ReadAhead, first: int = 0) -> int:
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


def _gzip_member(src: ReadAhead) -> Iterator[_Piece]:
    start, d = src.pos, zlib.decompressobj(31)
    yield _Piece("start", offset=start)
    while not d.eof:
        if not src.data and not src.more():
            detail = f"the file ends at byte {src.pos}, inside the gzip member at byte {start}"
            yield _Piece("hole", offset=start, reason="truncated_gzip", detail=detail)
            return
        try:
            out = d.decompress(src.data, MAX_OUT)
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
    src = ReadAhead(raw)
    head = src.data[:3] if src.ensure(3) else b""
    if head and _GZIP_MAGIC.startswith(head):
        return True, _gzip_pieces(src)
    return False, _plain_pieces(src)


def _plain_pieces(src: ReadAhead) -> Iterator[_Piece]:
    yield _Piece("start", offset=0)
    while src.data:
        yield _Piece("data", src.data)
        src.drop(len(src.data))
        src.more()


def _gzip_pieces(src: ReadAhead) -> Iterator[_Piece]:
    while src.ensure(len(_GZIP_MAGIC)):
        if src.data.startswith(_GZIP_MAGIC) or _GZIP_MAGIC.startswith(src.data):
            yield from _gzip_member(src)  # (a member cut inside its magic is a cut member)
        else:
            at = src.pos
            yield _Piece("garbage", offset=at, size=_skip_to_magic(src))


class WarcBytes:
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
