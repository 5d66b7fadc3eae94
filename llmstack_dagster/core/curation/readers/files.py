"""Paths and files: glob expansion, file-type checks before opening (never a FIFO, a folder or
a dangling link), non-blocking opens, and the per-file loop that turns a file that cannot be
opened into one quarantine row."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from llmstack_dagster.core.curation.readers.base import BadFile, RawRecord, SourceError
from llmstack_dagster.core.curation.sources import SourceBase

_GLOB_CHARS = "*?["


# --- paths -------------------------------------------------------------------------------


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
    if fs.exists(pattern) or (is_local(fs) and os.path.islink(local_path(fs, pattern))):
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


# --- files -------------------------------------------------------------------------------


def is_local(fs: AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def local_path(fs: AbstractFileSystem, path: str) -> str:
    return str(fs._strip_protocol(path))


def check_local(path: str, uri: str, locator: str = "file") -> None:
    """Raise :class:`BadFile` unless ``path`` is a regular file (never opens it)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as err:
        if os.path.islink(path):
            detail = f"dangling symbolic link to {os.readlink(path)!r}"
            raise BadFile(uri, "unreadable_file", detail, locator) from err
        raise BadFile(uri, "unreadable_file", f"file vanished: {err}", locator) from err
    except OSError as err:
        raise BadFile(uri, "unreadable_file", f"cannot stat: {err}", locator) from err
    if stat.S_ISDIR(mode):
        raise BadFile(uri, "not_a_regular_file", "is a directory", locator)
    if not stat.S_ISREG(mode):
        kind = "FIFO" if stat.S_ISFIFO(mode) else "socket, device or other special file"
        raise BadFile(uri, "not_a_regular_file", f"is a {kind}; not opened", locator)


def _check_remote(fs: AbstractFileSystem, path: str, uri: str, locator: str = "file") -> None:
    try:
        kind = fs.info(path).get("type")
    except OSError as err:
        raise BadFile(uri, "unreadable_file", f"{type(err).__name__}: {err}", locator) from err
    if kind != "file":
        raise BadFile(uri, "not_a_regular_file", f"is a {kind or 'non-file entry'}", locator)


@contextmanager
def open_binary(
    fs: AbstractFileSystem, path: str, uri: str, locator: str = "file"
) -> Iterator[BinaryIO]:
    """A regular file opened for reading; anything else raises :class:`BadFile`."""
    if is_local(fs):
        local = local_path(fs, path)
        check_local(local, uri, locator)
        try:  # non-blocking open, then fstat: a file swapped for a FIFO cannot block us
            fd = os.open(local, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as err:
            raise BadFile(uri, "unreadable_file", f"cannot open: {err}", locator) from err
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise BadFile(uri, "not_a_regular_file", "is not a regular file; not read", locator)
        os.set_blocking(fd, True)
        handle: BinaryIO = os.fdopen(fd, "rb")
    else:
        _check_remote(fs, path, uri, locator)
        try:
            handle = fs.open(path, "rb")
        except OSError as err:
            raise BadFile(uri, "unreadable_file", f"cannot open: {err}", locator) from err
    with handle:
        yield handle


class FileRecords:
    """One file's records; a file that cannot be opened is one quarantine record, and then
    ``failure`` says why (it stays None for a file that was read, even partly)."""

    def __init__(self, item: Any, read_one: Callable[[Any], Iterator[RawRecord]]) -> None:
        self.item = item
        self.read_one = read_one
        self.failure: str | None = None

    def __iter__(self) -> Iterator[RawRecord]:
        produced = False
        try:
            for raw in self.read_one(self.item):
                produced = True
                yield raw
        except BadFile as bad:
            if not produced:
                self.failure = f"{bad.uri} ({bad.reason}: {bad.detail})"
            yield RawRecord(
                bad.uri, bad.locator, error=bad.reason, detail=f"{bad.uri}: {bad.detail}"
            )


def unreadable_source(source: SourceBase, failures: list[str]) -> SourceError:
    """The error for a source none of whose files could be opened."""
    more = f"; and {len(failures) - 5} more" if len(failures) > 5 else ""
    return SourceError(source.name, "no file could be read: " + "; ".join(failures[:5]) + more)


def read_files(
    source: SourceBase, items: list[Any], read_one: Callable[[Any], Iterator[RawRecord]]
) -> Iterator[RawRecord]:
    """Every file's records; a file that cannot be opened is one quarantine row, and a source
    none of whose files can be opened is a :class:`SourceError` naming them."""
    failures: list[str] = []
    for item in items:
        records = FileRecords(item, read_one)
        yield from records
        if records.failure is not None:
            failures.append(records.failure)
    if failures and len(failures) == len(items):
        raise unreadable_source(source, failures)
