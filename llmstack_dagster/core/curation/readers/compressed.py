"""Plain, gzip and zstd files as chunks of decompressed bytes, every gzip member and zstd
frame checked complete, and the chunks split into lines."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import BinaryIO

import zstandard

CHUNK = 1 << 16  # bytes read from a file at a time
MAX_OUT = 8 << 20  # decompressed bytes produced at a time


class StreamError(Exception):
    """A compressed stream that is cut or corrupt; ``partial`` is the unfinished last line."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail
        self.partial = b""


class ReadAhead:
    """Bytes read ahead from a binary file, with the file offset of the first one."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.data, self.pos = raw, b"", 0

    def more(self) -> bool:
        chunk = self.raw.read(CHUNK)
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
    yield from iter(lambda: raw.read(CHUNK), b"")


def _gzip_chunks(raw: BinaryIO) -> Iterator[bytes]:
    """Decompressed bytes of every gzip member; a cut or corrupt stream raises StreamError."""
    src = ReadAhead(raw)
    while src.ensure(1):
        zeros = len(src.data) - len(src.data.lstrip(b"\0"))  # padding, as gzip(1) allows
        if zeros:
            src.drop(zeros)
            continue
        start, d = src.pos, zlib.decompressobj(31)
        while not d.eof:
            if not src.data and not src.more():
                raise StreamError(
                    "truncated_gzip",
                    f"the file ends at byte {src.pos}, inside the gzip member that starts at "
                    f"byte {start}; the rest of the file is lost",
                )
            try:
                out = d.decompress(src.data, MAX_OUT)
            except zlib.error as err:
                raise StreamError(
                    "corrupt_gzip",
                    f"corrupt gzip data in the member that starts at byte {start} ({err}); "
                    "the rest of the file is unreadable",
                ) from err
            src.drop(len(src.data) - len(d.unused_data if d.eof else d.unconsumed_tail))
            if out:
                yield out


def _zstd_chunks(raw: BinaryIO) -> Iterator[bytes]:
    """Decompressed bytes of every zstd frame; a frame cut short raises StreamError."""
    pos = start = 0
    frame = None
    for data in _plain_chunks(raw):
        while data:
            if frame is None:
                frame, start = zstandard.ZstdDecompressor().decompressobj(), pos
            try:
                out = frame.decompress(data)
            except zstandard.ZstdError as err:
                raise StreamError(
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
        raise StreamError(
            "truncated_zstd",
            f"the file ends at byte {pos}, inside the zstd frame that starts at byte {start}; "
            "the rest of the file is lost",
        )


def decoded_chunks(url: str, raw: BinaryIO) -> Iterator[bytes]:
    """The file's decompressed bytes, chosen by its suffix (``.gz``, ``.zst`` or plain)."""
    if url.endswith(".gz"):
        return _gzip_chunks(raw)
    if url.endswith(".zst"):
        return _zstd_chunks(raw)
    return _plain_chunks(raw)


def split_lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
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
    except StreamError as err:
        err.partial = bytes(tail)
        raise
    if tail:
        yield bytes(tail)
