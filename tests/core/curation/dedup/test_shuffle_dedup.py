"""The shuffle dedup gives the local runner's removal list, byte for byte."""

import pytest
from support.dedup_corpus import synthetic_domains

from llmstack_dagster.core.curation.dedup import DedupConfig, compute_fingerprints
from llmstack_dagster.core.curation.dedup.clusters import find_duplicate_clusters
from llmstack_dagster.core.curation.dedup.shuffle_dedup import (
    ShuffleConfig,
    find_duplicate_clusters_shuffled,
)
from llmstack_dagster.core.scale.shard_map import LocalShardMap
from llmstack_dagster.core.storage import Storage


def _prints(storage: Storage, docs: dict, config: DedupConfig) -> dict:
    return {d: compute_fingerprints(storage, m, d, config) for d, m in docs.items()}


def removal_bytes(storage: Storage, manifest) -> list[bytes]:
    return [storage.read_bytes(s.path) for s in manifest.shards]


@pytest.mark.parametrize(
    "shuffle",
    [
        ShuffleConfig(partitions=3, bands_per_read=4),
        ShuffleConfig(partitions=5, bands_per_read=1, max_edges_in_memory=0),
    ],
    ids=["union_find", "star_rounds"],
)
def test_shuffle_equals_local(tmp_path, shared_data, shuffle: ShuffleConfig) -> None:
    config = DedupConfig(bucket_all_pairs_max=4, threshold=0.6)
    local_store, shuffled_store = Storage(str(tmp_path / "a")), Storage(str(tmp_path / "b"))
    local = find_duplicate_clusters(
        local_store, _prints(local_store, synthetic_domains(shared_data, local_store), config),
        config,
    )  # fmt: skip
    prints = _prints(shuffled_store, synthetic_domains(shared_data, shuffled_store), config)
    shuffled = find_duplicate_clusters_shuffled(
        shuffled_store, prints, config, LocalShardMap(), shuffle
    )
    assert local.counts["removed"] > 10 and local.counts["near_removed"] > 0
    assert shuffled.counts == local.counts
    assert shuffled.content_version == local.content_version
    assert removal_bytes(shuffled_store, shuffled) == removal_bytes(local_store, local)
    extra = {k: v for k, v in shuffled.extra.items() if k != "shuffle"}
    assert extra == local.extra
    expected = "union_find" if shuffle.max_edges_in_memory else "large_star_small_star"
    assert shuffled.extra["shuffle"]["components"] == expected
    assert not shuffled_store.exists(f"{shuffled.folder}/.shuffle")
