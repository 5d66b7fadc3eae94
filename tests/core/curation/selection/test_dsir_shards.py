"""DSIR featurized one shard per task gives the one-pass counts, the n-gram cap included;
a retry runs only the tasks its failed attempt did not finish."""

import numpy as np
import pytest
from support.dedup_corpus import synthetic_domains
from support.resume import FailOnce

from llmstack_dagster.core.curation.selection import dsir
from llmstack_dagster.core.curation.selection.dsir import (
    DSIRConfig,
    featurize_shard,
    fit_bucket_counts,
    fit_dsir_target,
    raw_bucket_counts,
    select_dsir,
)
from llmstack_dagster.core.curation.selection.shard_tables import iter_column_batches
from llmstack_dagster.core.scale.shard_map import LocalShardMap
from llmstack_dagster.core.storage import Storage


@pytest.fixture
def web(storage, shared_data):
    return synthetic_domains(shared_data, storage)["web"]


def one_pass(storage, documents, config: DSIRConfig) -> np.ndarray:
    batches = iter_column_batches(storage, documents.shards, "text", config.batch_size)
    return fit_bucket_counts(batches, config.hasher(), config.raw_fit_max_ngrams)


def test_caps_anywhere_give_the_one_pass_counts(storage, web) -> None:
    base = DSIRConfig(num_buckets=512, batch_size=5, raw_fit_max_ngrams=None)
    per_shard = [featurize_shard(storage, base, s)[1] for s in web.shards]
    first_shard = int(per_shard[0].sum())
    total = sum(int(p.sum()) for p in per_shard)
    assert len(web.shards) > 2
    for cap in (None, 0, 1, first_shard, first_shard + 3, total // 2, total, total + 1):
        config = base.model_copy(update={"raw_fit_max_ngrams": cap})
        got = raw_bucket_counts(storage, web, config, LocalShardMap(), f"work/{cap}")
        assert np.array_equal(got, one_pass(storage, web, config)), cap
    assert int(raw_bucket_counts(storage, web, base, LocalShardMap(), "w").sum()) == total


def _attempts(root, shared_data, monkeypatch, keys: tuple[str, str]):
    storage = Storage(str(root))
    domains = synthetic_domains(shared_data, storage)
    config = DSIRConfig(num_buckets=512, keep_fraction=0.5)
    target = fit_dsir_target(storage, {"news": domains["news"]}, config)
    spies = {name: FailOnce(getattr(dsir, name)) for name in ("featurize_shard", "weigh_shard")}
    for name, spy in spies.items():
        monkeypatch.setattr(dsir, name, spy)
    spies["featurize_shard"].armed = False  # the weighing pass fails
    with pytest.raises(RuntimeError, match="killed"):
        select_dsir(storage, domains["web"], "web", target, config, resume_key=keys[0])
    for spy in spies.values():
        spy.retry()
    manifest = select_dsir(storage, domains["web"], "web", target, config, resume_key=keys[1])
    files = [storage.read_bytes(s.path) for s in [*manifest.shards, *manifest.drops]]
    calls = {name: spy.calls for name, spy in spies.items()}
    return manifest, files, calls, len(domains["web"].shards)


def test_a_retry_featurizes_and_weighs_only_what_its_run_did_not(
    tmp_path, shared_data, monkeypatch
) -> None:
    fresh, files, calls, n = _attempts(tmp_path / "a", shared_data, monkeypatch, ("A", "B"))
    assert n > 2 and calls == {"featurize_shard": n, "weigh_shard": n}
    resumed, same, calls, _ = _attempts(tmp_path / "b", shared_data, monkeypatch, ("A", "A"))
    assert calls == {"featurize_shard": 0, "weigh_shard": n - 1}
    assert resumed.counts == fresh.counts and same == files
