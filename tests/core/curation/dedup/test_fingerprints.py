"""A retried fingerprint run fingerprints only the shards its failed attempt did not finish."""

from pathlib import Path

import pytest
from support.dedup_corpus import synthetic_domains
from support.resume import FailOnce

from llmstack_dagster.core.curation.dedup import DedupConfig, compute_fingerprints
from llmstack_dagster.core.curation.dedup import fingerprints as fingerprints_module
from llmstack_dagster.core.storage import ShardManifest, Storage


def _attempts(root: Path, shared_data: Path, monkeypatch, keys: tuple[str, str]):
    storage = Storage(str(root))
    web = synthetic_domains(shared_data, storage)["web"]
    spy = FailOnce(fingerprints_module.fingerprint_shard)
    monkeypatch.setattr(fingerprints_module, "fingerprint_shard", spy)
    with pytest.raises(RuntimeError, match="killed"):
        compute_fingerprints(storage, web, "web", DedupConfig(), resume_key=keys[0])
    spy.retry()
    manifest = compute_fingerprints(storage, web, "web", DedupConfig(), resume_key=keys[1])
    return storage, manifest, spy.calls, len(web.shards)


def _files(storage: Storage, manifest: ShardManifest) -> list[bytes]:
    return [storage.read_bytes(s.path) for s in manifest.shards]


def test_a_retry_resumes_its_own_run_only(tmp_path: Path, shared_data: Path, monkeypatch) -> None:
    other, fresh, calls, n = _attempts(tmp_path / "a", shared_data, monkeypatch, ("A", "B"))
    assert n > 2 and calls == n  # another run's key: every shard again
    store, resumed, calls, _ = _attempts(tmp_path / "b", shared_data, monkeypatch, ("A", "A"))
    assert calls == n - 1  # the same run: only the shards not done
    assert resumed.counts == fresh.counts and _files(store, resumed) == _files(other, fresh)
    assert store.entries(resumed.folder) == [f"part-{i:05d}.parquet" for i in range(n)]
