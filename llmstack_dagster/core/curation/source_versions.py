"""Data versions of sources: what a source's files are now, as one short hash.

A file is identified by its URL, size and modification time (or the object store's ETag),
the way ``make`` and object-store sync tools decide what changed, without reading the data.
A Hugging Face source is identified by its dataset, config, split, files and revision; an
unpinned revision (``None``) follows the hub's main branch, so its version cannot see new
commits: pin ``revision`` for reproducible runs.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fsspec.core import url_to_fs

from llmstack_dagster.core.curation.readers import source_files
from llmstack_dagster.core.curation.sources import HuggingFaceSource, SourceBase

_STAMP_KEYS = ("size", "mtime", "ETag", "etag", "md5Hash", "generation", "LastModified")


def _file_stamp(url: str) -> dict[str, Any]:
    fs, path = url_to_fs(url)
    try:
        info = fs.info(path)
    except (OSError, ValueError) as err:  # unreadable entries are the readers' to report
        return {"url": url, "error": type(err).__name__}
    return {"url": url, **{k: str(info[k]) for k in _STAMP_KEYS if k in info}}


def source_data_version(source: SourceBase) -> str:
    """A hash of the source's configuration and the current stamps of its files."""
    stamps: list[Any]
    if isinstance(source, HuggingFaceSource):
        stamps = []
    else:
        stamps = [_file_stamp(url) for url in source_files(source)]
    payload = {"config": source.model_dump(mode="json"), "files": stamps}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]
