"""SIGKILL in the middle of writing shards: the previous version stays whole and readable."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
from support.documents import write_jsonl

from llmstack_dagster.core.curation.dedup.clusters import find_duplicate_clusters
from llmstack_dagster.core.curation.dedup.config import DedupConfig
from llmstack_dagster.core.curation.dedup.fingerprints import compute_fingerprints
from llmstack_dagster.core.curation.dedup.removal import apply_removals
from llmstack_dagster.core.curation.ingest import ingest_domain
from llmstack_dagster.core.curation.sources import DomainConfig
from llmstack_dagster.core.storage import ShardManifest, Storage, read_manifest

SHARD_ROWS = 200
STAGE_SCRIPT = """
import sys
from llmstack_dagster.core.curation.dedup.config import DedupConfig
from llmstack_dagster.core.curation.dedup.removal import apply_removals
from llmstack_dagster.core.curation.ingest import ingest_domain
from llmstack_dagster.core.curation.sources import DomainConfig
from llmstack_dagster.core.storage import Storage, read_manifest

stage, root, corpus, rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
storage = Storage(root)
if stage == "raw_documents":
    config = DomainConfig.model_validate(
        {"sources": [{"name": "gen", "kind": "jsonl", "paths": [corpus],
                      "fields": {"created": "created"}}]})
    ingest_domain(storage, "web", config, max_shard_rows=rows)
else:
    apply_removals(storage, read_manifest(storage, "raw_documents", "web"),
                   read_manifest(storage, "duplicate_clusters", None), "web",
                   DedupConfig(max_shard_rows=rows))
"""


def _domain(corpus: Path) -> DomainConfig:
    fields = {"created": "created"}
    source = {"name": "gen", "kind": "jsonl", "paths": [str(corpus)], "fields": fields}
    return DomainConfig.model_validate({"sources": [source]})


def _kill_after_first_new_shard(stage: str, root: Path, corpus: Path, committed: str) -> str:
    """Run ``stage`` in a subprocess, SIGKILL it once its first shard exists; the version."""
    script = root.parent / "stage.py"
    script.write_text(STAGE_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), stage, str(root), str(corpus), str(SHARD_ROWS)]
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            found = [
                p
                for p in glob.glob(str(root / stage / "web" / "v-*" / "*" / "*.parquet"))
                + glob.glob(str(root / stage / "web" / "v-*" / "*.parquet"))
                if committed not in p
            ]
            if found:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return Path(found[0]).relative_to(root / stage / "web").parts[0]
            if proc.poll() is not None:
                pytest.fail(f"{stage} ended (rc {proc.returncode}) before it could be killed")
            time.sleep(0.005)
        pytest.fail(f"{stage} wrote no shard within 120 s")
    finally:
        if proc.poll() is None:
            proc.kill()
    raise AssertionError("unreachable")


def _assert_intact(storage: Storage, expected: ShardManifest) -> None:
    """The pointer names ``expected``, its files are all there, ids distinct, counts equal."""
    manifest = read_manifest(storage, expected.asset, expected.partition)
    assert manifest == expected
    ids = pa.concat_arrays(
        [storage.read_table(s.path, ["id"])["id"].combine_chunks() for s in manifest.shards]
    )
    assert len(ids) == manifest.rows == sum(s.rows for s in expected.shards)
    assert len(set(ids.to_pylist())) == len(ids)


@pytest.mark.slow
def test_kill_during_raw_documents(tmp_path: Path) -> None:
    root = tmp_path / "store"
    storage = Storage(str(root))
    corpus = write_jsonl(tmp_path / "corpus.jsonl", 300, prefix="old")
    previous = ingest_domain(storage, "web", _domain(corpus), max_shard_rows=SHARD_ROWS)
    write_jsonl(corpus, 20_000, prefix="new", seed=1)

    killed = _kill_after_first_new_shard("raw_documents", root, corpus, previous.version)
    _assert_intact(storage, previous)
    assert previous.rows == 300
    assert killed in storage.entries("raw_documents/web")  # left behind, but unreachable

    rerun = ingest_domain(storage, "web", _domain(corpus), max_shard_rows=SHARD_ROWS)
    _assert_intact(storage, rerun)
    assert rerun.rows == 20_000
    assert storage.entries("raw_documents/web") == ["manifest.json", rerun.version]


@pytest.mark.slow
def test_kill_during_deduplicated_documents(tmp_path: Path) -> None:
    root = tmp_path / "store"
    storage = Storage(str(root))
    config = DedupConfig(max_shard_rows=SHARD_ROWS)

    def upstream(corpus: Path) -> tuple[ShardManifest, ShardManifest]:
        raw = ingest_domain(storage, "web", _domain(corpus), max_shard_rows=SHARD_ROWS)
        fingerprints = compute_fingerprints(storage, raw, "web", config)
        return raw, find_duplicate_clusters(storage, {"web": fingerprints}, config)

    corpus = write_jsonl(tmp_path / "corpus.jsonl", 400, prefix="old")
    previous = apply_removals(storage, *upstream(corpus), "web", config)
    write_jsonl(corpus, 12_000, prefix="new", seed=2)
    upstream(corpus)

    killed = _kill_after_first_new_shard("deduplicated_documents", root, corpus, previous.version)
    _assert_intact(storage, previous)
    assert previous.counts["in"] == 400
    assert killed in storage.entries("deduplicated_documents/web")

    rerun = apply_removals(storage, *upstream(corpus), "web", config)
    _assert_intact(storage, rerun)
    assert rerun.counts["in"] == 12_000 == rerun.counts["kept"] + rerun.counts["dropped"]
    assert storage.entries("deduplicated_documents/web") == ["manifest.json", rerun.version]
