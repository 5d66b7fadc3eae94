"""Folders of text files: one record per file, its path relative to the folder as its id."""

from __future__ import annotations

from collections.abc import Iterator

from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs

from llmstack_dagster.core.curation.readers.base import BadFile, RawRecord, SourceError
from llmstack_dagster.core.curation.readers.files import open_binary, read_files
from llmstack_dagster.core.curation.sources import TextDirSource


def _text_file(fs: AbstractFileSystem, base: str, path: str) -> Iterator[RawRecord]:
    rel = path[len(base) + 1 :]
    locator = f"file:{rel}"
    with open_binary(fs, path, path, locator) as handle:
        try:
            data = handle.read()
        except OSError as err:
            raise BadFile(path, "unreadable_file", f"read failed: {err}", locator) from err
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        yield RawRecord(path, locator, error="invalid_utf8", detail=str(err), sample=data)
        return
    yield RawRecord(path, locator, record={"id": rel, "text": text})


def text_dir_paths(source: TextDirSource) -> tuple[AbstractFileSystem, str, list[str]]:
    """The folder's filesystem, its path and every entry matching the pattern, sorted; a
    missing folder or a pattern that matches nothing is a :class:`SourceError`."""
    fs, base = url_to_fs(source.path)
    if not fs.isdir(base):
        raise SourceError(source.name, f"folder not found: {source.path}")
    base = base.rstrip("/")
    paths = [p for p in sorted(fs.glob(f"{base}/{source.pattern}")) if p.rstrip("/") != base]
    if not paths:
        raise SourceError(
            source.name, f"no file in folder {source.path!r} matches pattern {source.pattern!r}"
        )
    return fs, base, paths


def text_file(source: TextDirSource, path: str) -> Iterator[RawRecord]:
    """The record of one file of :func:`text_dir_paths`."""
    fs, base = url_to_fs(source.path)
    return _text_file(fs, base.rstrip("/"), path)


def read_text_dir(source: TextDirSource) -> Iterator[RawRecord]:
    fs, base, paths = text_dir_paths(source)
    yield from read_files(source, paths, lambda path: _text_file(fs, base, path))
