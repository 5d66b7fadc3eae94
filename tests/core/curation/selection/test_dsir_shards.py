"""DSIR featurized one shard per task gives the one-pass counts, the n-gram cap included."""

import numpy as np
import pytest
from support.dedup_corpus import synthetic_domains

from llmstack_dagster.core.curation.selection.dsir import (
    DSIRConfig,
    featurize_shard,
    fit_bucket_counts,
    raw_bucket_counts,
)
from llmstack_dagster.core.curation.selection.shard_tables import iter_column_batches
from llmstack_dagster.core.scale.shard_map import LocalShardMap


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
        got = raw_bucket_counts(storage, web, config, LocalShardMap())
        assert np.array_equal(got, one_pass(storage, web, config)), cap
    assert int(raw_bucket_counts(storage, web, base, LocalShardMap()).sum()) == total
