"""Precision and recall of the whole pipeline on real text with known edits."""

import numpy as np
import pyarrow as pa

from llmstack_dagster.core.curation.dedup import DedupConfig, MinHasher
from llmstack_dagster.core.curation.dedup.minhash import shingle_jaccard
from llmstack_dagster.core.curation.dedup.synthetic import edit, load_texts
from llmstack_dagster.core.storage import iter_shard_tables

from .corpus import run_all, write_domain

BANDS = [(0.5, 0.7), (0.7, 0.8), (0.8, 0.85), (0.85, 0.9), (0.9, 0.95), (0.95, 1.01)]


def test_precision_and_recall_by_jaccard_band(storage, shared_data) -> None:
    config = DedupConfig()
    rng = np.random.default_rng(0)
    bases = load_texts(shared_data, min_words=80)[:300]
    vocabulary = sorted({w for t in bases[:50] for w in t.split()})
    docs, pairs = [], []
    for b, text in enumerate(bases):
        docs.append((f"base/{b:04d}", text, 0))
        for v in range(3):
            docs.append((f"var/{b:04d}-{v}", edit(text, rng, vocabulary, float(rng.random())), 1))
            pairs.append((f"base/{b:04d}", f"var/{b:04d}-{v}"))
    texts = dict((i, t) for i, t, _ in docs)
    sets = dict(zip(texts, MinHasher(config).shingle_sets(list(texts.values())), strict=True))
    truth = np.array([shingle_jaccard(sets[a], sets[b]) for a, b in pairs])
    assert truth.min() < 0.6 and (truth > 0.95).any()  # the edits span the range

    half = len(docs) // 2
    domains = {
        "web": write_domain(storage, "web", docs[:half], shard_rows=200),
        "news": write_domain(storage, "news", docs[half:], shard_rows=200),
    }
    clusters, _ = run_all(storage, domains, config)
    removed = pa.concat_tables([t for _, t in iter_shard_tables(storage, clusters.shards)])
    cluster_of = dict(
        zip(removed["id"].to_pylist(), removed["cluster_id"].to_pylist(), strict=True)
    )
    kept_of = dict(zip(removed["id"].to_pylist(), removed["kept_id"].to_pylist(), strict=True))

    def cluster(doc: str) -> int | None:
        if doc in cluster_of:
            return cluster_of[doc]
        keeper = [c for d, c in cluster_of.items() if kept_of[d] == doc]
        return keeper[0] if keeper else None

    found = np.array([cluster(a) is not None and cluster(a) == cluster(b) for a, b in pairs])
    report = []
    for low, high in BANDS:
        sel = (truth >= low) & (truth < high)
        report.append(
            f"J[{low:.2f},{min(high, 1):.2f}): n={sel.sum()} found={found[sel].mean():.3f}"
        )
    print("\n".join(report))
    high = truth >= 0.85
    recall = found[high].mean()
    # precision: every removal must be a true near-duplicate of the document kept in its place
    removed_pairs = list(
        zip(removed["id"].to_pylist(), removed["kept_id"].to_pylist(), strict=True)
    )
    removal_truth = np.array([shingle_jaccard(sets[a], sets[b]) for a, b in removed_pairs])
    same_origin = np.array([a.split("/")[1][:4] == b.split("/")[1][:4] for a, b in removed_pairs])
    precision = same_origin.mean()
    print(
        f"recall(J>=0.85)={recall:.3f} precision(same origin)={precision:.3f} "
        f"removals with true J>=0.7: {(removal_truth >= 0.7).mean():.3f}"
    )
    assert high.sum() > 200
    assert recall >= 0.95
    assert precision >= 0.95
    assert (removal_truth >= 0.7).mean() >= 0.95
    assert found[truth < 0.6].mean() < 0.1
