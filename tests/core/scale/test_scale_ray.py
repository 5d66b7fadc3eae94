"""The routed stages and the dedup shuffle on an in-process Ray cluster give the bytes the
local backend gives, on the demo corpus and on a synthetic corpus (quality scoring:
``tests/core/curation/quality/test_scoring_on_ray.py``, beside its reference LM fixture);
ingestion (capped sources included) and tokenization too."""

import shutil
from pathlib import Path

import pytest
from support.dedup_corpus import synthetic_domains
from support.training_data import assert_same_output

from llmstack_dagster.core.curation.dedup import DedupConfig, compute_fingerprints
from llmstack_dagster.core.curation.dedup.clusters import find_duplicate_clusters
from llmstack_dagster.core.curation.dedup.fingerprints import _fingerprint_shards
from llmstack_dagster.core.curation.dedup.shuffle_dedup import (
    ShuffleConfig,
    find_duplicate_clusters_shuffled,
)
from llmstack_dagster.core.curation.demo import load_corpus
from llmstack_dagster.core.curation.ingest import ingest_domain
from llmstack_dagster.core.curation.selection.dsir import DSIRConfig, _select, fit_dsir_target
from llmstack_dagster.core.scale.ray_backend import RayShardMap
from llmstack_dagster.core.scale.shard_map import LocalShardMap
from llmstack_dagster.core.storage import ShardManifest, Storage
from llmstack_dagster.core.training.token_shards import TokenShardConfig, run_token_shards

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_cluster")]
CONFIG = DedupConfig()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, ShardManifest]]:
    """The demo corpus ingested in shards of 150 rows (2-3 shards a domain)."""
    root = tmp_path_factory.mktemp("demo")
    storage = Storage(str(root))
    domains = load_corpus(None).domains
    raw = {d: ingest_domain(storage, d, c, max_shard_rows=150) for d, c in domains.items()}
    return root, raw


def shard_bytes(storage: Storage, manifest: ShardManifest) -> list[bytes]:
    return [storage.read_bytes(s.path) for s in manifest.shards]


def test_ingestion_on_ray_equals_local(tmp_path: Path) -> None:
    domains = load_corpus(None).domains
    books = domains["books"].model_copy(deep=True)
    books.sources[0].max_docs = 7  # 12 files: windows of 2, the cap inside the fourth file
    runs = {}
    for name, engine in (("local", LocalShardMap()), ("ray", RayShardMap(workers=2))):
        storage = Storage(str(tmp_path / name))
        runs[name] = [
            (manifest.counts, manifest.extra, [storage.read_bytes(s.path) for s in manifest.shards])
            for manifest in (
                ingest_domain(storage, d, c, max_shard_rows=150, shard_map=engine)
                for d, c in (("books", books), ("web", domains["web"]))
            )
        ]
    assert runs["local"] == runs["ray"] and runs["local"][0][0]["read"] == 7


def test_tokenization_on_ray_equals_local(corpus, tokenizer_file, token_data) -> None:
    storage, manifest = corpus
    config = TokenShardConfig(val_fraction=0.1, max_tokens_per_shard=60_000)
    result = run_token_shards(storage, manifest, tokenizer_file, config, asset="tokenized_ray",
                              shard_map=RayShardMap(workers=2))  # fmt: skip
    assert_same_output(Path(storage.local_path(result.folder)), token_data)


def test_fingerprints_on_ray_equal_local(demo) -> None:
    root, raw = demo
    storage = Storage(str(root))
    for domain in ("code", "news"):
        local = _fingerprint_shards(storage, raw[domain], domain, CONFIG, f"l/{domain}",
                                    LocalShardMap())  # fmt: skip
        remote = _fingerprint_shards(storage, raw[domain], domain, CONFIG, f"r/{domain}",
                                     RayShardMap(max_retries=1))  # fmt: skip
        assert len(local.shards) == len(raw[domain].shards) > 1
        assert local.counts == remote.counts
        assert shard_bytes(storage, local) == shard_bytes(storage, remote)


def test_dsir_on_ray_equals_local(demo) -> None:
    root, raw = demo
    storage = Storage(str(root))
    config = DSIRConfig(keep_fraction=0.5)
    target = fit_dsir_target(storage, {"wiki": raw["wiki"]}, config)
    runs = {
        name: _select(storage, raw["news"], "news", target, config, f"dsir-{name}", engine)
        for name, engine in (("local", LocalShardMap()), ("ray", RayShardMap(workers=2)))
    }
    local, remote = runs["local"], runs["ray"]
    assert local.counts == remote.counts and local.counts["dropped"] > 0
    assert shard_bytes(storage, local) == shard_bytes(storage, remote)
    assert [storage.read_bytes(d.path) for d in local.drops] == [
        storage.read_bytes(d.path) for d in remote.drops
    ]
    ratios = [storage.read_bytes(f"dsir-{name}/log_ratio.npy") for name in runs]
    assert ratios[0] == ratios[1]


def _dedup_both_ways(root: Path, docs: dict[str, ShardManifest], partitions: int) -> None:
    """Local runner at ``root``; a copy of ``root`` runs the shuffle on Ray; same bytes."""
    storage = Storage(str(root))
    prints = {d: compute_fingerprints(storage, m, d, CONFIG) for d, m in docs.items()}
    local = find_duplicate_clusters(storage, prints, CONFIG)
    copy = root.with_name(root.name + "-ray")
    shutil.copytree(root, copy)
    shutil.rmtree(copy / "duplicate_clusters")
    ray_store = Storage(str(copy))
    shuffled = find_duplicate_clusters_shuffled(
        ray_store, prints, CONFIG, RayShardMap(max_retries=1),
        ShuffleConfig(partitions=partitions, max_edges_in_memory=0),
    )  # fmt: skip
    assert local.counts["removed"] > 0
    assert shuffled.counts == local.counts
    assert shard_bytes(ray_store, shuffled) == shard_bytes(storage, local)
    assert shuffled.extra["shuffle"]["engine"] == "ray"


def test_shuffle_dedup_on_ray_equals_local_on_demo(demo, tmp_path: Path) -> None:
    root, raw = demo
    target = tmp_path / "demo"
    shutil.copytree(root, target)
    _dedup_both_ways(target, raw, partitions=4)


def test_shuffle_dedup_on_ray_equals_local_on_synthetic(tmp_path: Path, shared_data) -> None:
    root = tmp_path / "synthetic"
    docs = synthetic_domains(shared_data, Storage(str(root)))
    _dedup_both_ways(root, docs, partitions=3)
