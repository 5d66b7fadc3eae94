import pyarrow as pa
import pytest

from llmstack_dagster.core.curation.dedup import DedupConfig
from llmstack_dagster.core.curation.dedup.synthetic import load_texts
from llmstack_dagster.core.storage import iter_shard_tables, read_manifest

from .corpus import run_all, write_domain


@pytest.fixture(scope="module")
def texts(shared_data) -> list[str]:
    return load_texts(shared_data, min_words=60)[:80]


def removal_rows(storage, clusters) -> list[dict]:
    return pa.concat_tables([t for _, t in iter_shard_tables(storage, clusters.shards)]).to_pylist()


def test_keep_oldest_across_domains_with_id_ties(storage, texts) -> None:
    base = texts[0]
    near = base.replace(" the ", " a ", 1) + " Extra closing words."
    docs = {
        "web": write_domain(storage, "web", [("web/b", base, 5), ("web/x", texts[1], 0)]),
        "news": write_domain(
            storage,
            "news",
            [
                ("news/a", "  " + base.replace(" ", "\n", 3), 5),
                ("news/z", near, 1),
                ("news/y", texts[2], 9),
            ],
        ),
    }
    clusters, deduped = run_all(storage, docs, DedupConfig())
    rows = {r["id"]: r for r in removal_rows(storage, clusters)}
    # news/z is the oldest (day 1) of the cluster {web/b, news/a, news/z}
    assert set(rows) == {"web/b", "news/a"}
    assert {r["kept_id"] for r in rows.values()} == {"news/z"}
    assert all(r["reason"] == "near_duplicate_of" for r in rows.values())
    assert len({r["cluster_id"] for r in rows.values()}) == 1
    assert clusters.extra["cross_domain_removed"] == {"web->news": 1}
    assert deduped["web"].counts == {
        "in": 2,
        "kept": 1,
        "dropped": 1,
        "exact_duplicate": 0,
        "near_duplicate": 1,
    }


def test_exact_tie_keeps_smallest_id(storage, texts) -> None:
    same = texts[3]
    docs = {
        "web": write_domain(
            storage,
            "web",
            [("web/2", same, 3), ("web/1", same.replace(" ", "  "), 3), ("web/3", same, 4)],
        )
    }
    clusters, deduped = run_all(storage, docs, DedupConfig())
    rows = removal_rows(storage, clusters)
    assert sorted(r["id"] for r in rows) == ["web/2", "web/3"]
    assert {(r["kept_id"], r["reason"], r["estimated_jaccard"]) for r in rows} == {
        ("web/1", "exact_duplicate_of", 1.0)
    }
    drops = pa.concat_tables([t for _, t in iter_shard_tables(storage, deduped["web"].drops)])
    assert set(drops["reason"].to_pylist()) == {"exact_duplicate"}
    assert set(drops["stage"].to_pylist()) == {"deduplicated_documents"}
    assert "web/1" in drops["detail"][0].as_py()


def test_counts_balance_ids_unique_no_exact_survivor(storage, texts) -> None:
    domains = {}
    for k, domain in enumerate(["web", "news", "books"]):
        docs = [(f"{domain}/{i}", texts[(i * 7 + k) % 40], i + k) for i in range(60)]
        domains[domain] = write_domain(storage, domain, docs, shard_rows=17)
    clusters, deduped = run_all(storage, domains, DedupConfig())
    total_kept = 0
    survivors = []
    for domain, manifest in deduped.items():
        c = manifest.counts
        assert c["in"] == c["kept"] + c["dropped"] == 60
        assert manifest.rows == c["kept"] and manifest.dropped == c["dropped"]
        total_kept += c["kept"]
        for _, table in iter_shard_tables(storage, manifest.shards):
            survivors.extend(table["text"].to_pylist())
        assert read_manifest(storage, "deduplicated_documents", domain).counts == c
    assert total_kept == 40  # 40 distinct texts in 180 documents
    assert len(set(survivors)) == len(survivors)
    assert clusters.counts["removed"] == 140
    assert clusters.extra["cluster_size_histogram"]
    assert clusters.extra["largest_clusters"][0]["size"] >= 4


def test_deterministic(tmp_path, texts) -> None:
    from llmstack_dagster.core.storage import Storage

    outputs = []
    for run in range(2):
        storage = Storage(str(tmp_path / f"run{run}"))
        docs = [
            (f"w/{i}", texts[i % 25] + ("" if i < 25 else " tail words here"), i) for i in range(50)
        ]
        clusters, _ = run_all(storage, {"web": write_domain(storage, "web", docs)}, DedupConfig())
        outputs.append((removal_rows(storage, clusters), clusters.counts))
    assert outputs[0] == outputs[1]
    assert outputs[0][1]["removed"] == 25


def test_rejects_fingerprints_from_another_config(storage, texts) -> None:
    from llmstack_dagster.core.curation.dedup import compute_fingerprints, find_duplicate_clusters

    docs = write_domain(storage, "web", [("w/1", texts[0], 0)])
    prints = compute_fingerprints(storage, docs, "web", DedupConfig(seed=1))
    with pytest.raises(ValueError, match="same dedup config"):
        find_duplicate_clusters(storage, {"web": prints}, DedupConfig())


def test_texts_without_words_are_not_lsh_candidates(storage) -> None:
    docs = write_domain(storage, "web", [("w/1", "!!!", 0), ("w/2", "???", 1), ("w/3", "...", 2)])
    clusters, deduped = run_all(storage, {"web": docs}, DedupConfig())
    assert clusters.counts["removed"] == 0
    assert deduped["web"].counts["kept"] == 3
