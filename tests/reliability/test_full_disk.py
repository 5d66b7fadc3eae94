"""A full disk (ENOSPC) while writing: a clear error naming the path, the last version intact."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.documents import write_jsonl

from llmstack_dagster.core.curation.ingest import ingest_domain
from llmstack_dagster.core.curation.sources import DomainConfig
from llmstack_dagster.core.storage import Storage, StorageError, read_manifest

DISK_BYTES = 2 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs; needs root (mount), skipped otherwise."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _domain(corpus: Path) -> DomainConfig:
    source = {"name": "gen", "kind": "jsonl", "paths": [str(corpus)]}
    return DomainConfig.model_validate({"sources": [source]})


def test_full_disk_names_the_path_and_keeps_the_last_version(small_disk, tmp_path) -> None:
    storage = Storage(str(small_disk / "store"))
    corpus = write_jsonl(tmp_path / "corpus.jsonl", 200, prefix="old")
    previous = ingest_domain(storage, "web", _domain(corpus), max_shard_rows=100)
    # random words compress to ~1 byte per character: 30k records of 300 words do not fit
    write_jsonl(corpus, 30_000, prefix="new", words=300, seed=4)

    with pytest.raises(StorageError) as raised:
        ingest_domain(storage, "web", _domain(corpus), max_shard_rows=2_000)
    message = str(raised.value)
    assert "asset 'raw_documents' partition 'web'" in message
    assert "No space left on device" in message
    assert str(small_disk / "store" / "raw_documents" / "web" / "v-") in message

    assert read_manifest(storage, "raw_documents", "web") == previous
    assert storage.entries("raw_documents/web") == ["manifest.json", previous.version]
    rows = sum(storage.read_table(s.path).num_rows for s in previous.shards)
    assert rows == previous.rows == 200
