from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from scipy.stats import spearmanr
from selection_docs import document_rows

from llmstack_dagster.core.curation.selection.dsir import (
    WEIGHT_COLUMN,
    DSIRConfig,
    fit_bucket_counts,
    fit_dsir_target,
    log_importance_ratio,
    select_dsir,
    select_indices,
)
from llmstack_dagster.core.curation.selection.ngram_features import NgramHasher
from llmstack_dagster.core.storage import iter_shard_tables, read_manifest


def _read(storage, shards) -> pa.Table:
    return pa.concat_tables([t for _, t in iter_shard_tables(storage, shards)])


@pytest.fixture
def web_manifest(real_texts, write_docs):
    texts = real_texts["pile"][:300]
    quality = ["high", "medium", "low"] * 100
    return write_docs(
        document_rows(texts, "web", "pile", quality_class=quality), "quality_scored", "web", 128
    )


def test_keeps_configured_rate_and_balances(storage, real_texts, web_manifest):
    config = DSIRConfig(keep_fraction=0.9)
    target = fit_dsir_target(storage, real_texts["wiki"], config)
    manifest = select_dsir(storage, web_manifest, "web", target, config)

    assert manifest.rows == 270 and manifest.dropped == 30
    assert manifest.counts["in"] == manifest.counts["kept"] + manifest.counts["dropped"] == 300
    kept = _read(storage, manifest.shards)
    drops = _read(storage, manifest.drops)
    assert set(kept.column("quality_class").to_pylist()) == {"high", "medium", "low"}
    assert set(drops.column("reason").to_pylist()) == {"dsir_not_selected"}
    assert set(kept.column("id").to_pylist()).isdisjoint(drops.column("id").to_pylist())
    dropped_weights = [json.loads(d)[WEIGHT_COLUMN] for d in drops.column("detail").to_pylist()]
    # weighted sampling: the dropped documents lean towards low weights
    assert np.mean(dropped_weights) < np.mean(kept.column(WEIGHT_COLUMN).to_numpy())
    assert read_manifest(storage, "dsir_selected", "web") == manifest


def test_deterministic_under_seed(storage, real_texts, web_manifest):
    target = fit_dsir_target(storage, real_texts["wiki"])

    def kept_ids(seed: int) -> list[str]:
        manifest = select_dsir(storage, web_manifest, "web", target, DSIRConfig(seed=seed))
        return sorted(_read(storage, manifest.shards).column("id").to_pylist())

    first = kept_ids(1)
    assert len(first) == 285
    assert kept_ids(1) == first


def test_seed_and_domain_change_the_draw():
    flat = np.zeros(1000)
    lengths = np.full(1000, 200)

    def draw(seed: int, domain: str) -> np.ndarray:
        return select_indices(flat, lengths, domain, DSIRConfig(seed=seed))[0]

    assert draw(0, "web").sum() == 950
    np.testing.assert_array_equal(draw(0, "web"), draw(0, "web"))
    assert (draw(0, "web") != draw(1, "web")).any()
    assert (draw(0, "web") != draw(0, "news")).any()


def test_without_extra_columns_and_short_documents(storage, real_texts, write_docs):
    texts = real_texts["wiki"][:40] + ["too short"] * 10
    manifest = write_docs(document_rows(texts, "wiki", "wikibio"), "quality_scored", "wiki")
    config = DSIRConfig(keep_fraction=0.5, min_example_length=5)
    target = fit_dsir_target(storage, real_texts["news"], config)
    out = select_dsir(storage, manifest, "wiki", target, config)
    assert out.counts["dsir_too_short"] == 10
    assert out.rows == 20 and out.dropped == 30
    kept = _read(storage, out.shards)
    assert "too short" not in kept.column("text").to_pylist()
    assert kept.schema.names[-1] == WEIGHT_COLUMN


def test_target_counts_equal_for_manifest_and_texts(storage, real_texts, web_manifest):
    from_manifest = fit_dsir_target(storage, {"web": web_manifest})
    from_texts = fit_dsir_target(storage, real_texts["pile"][:300])
    np.testing.assert_array_equal(from_manifest, from_texts)


def test_raw_fit_cap_stops_after_crossing_document(real_texts):
    hasher = NgramHasher()
    texts = real_texts["news"][:20]
    per_doc = [int(hasher.hash_batch([t]).ids.size) for t in texts]
    cap = per_doc[0] + per_doc[1] + 1
    counts = fit_bucket_counts([texts[:5], texts[5:]], hasher, max_ngrams=cap)
    assert counts.sum() == sum(per_doc[:3])


def test_log_ratio_formula():
    target = np.array([3, 1, 0])
    raw = np.array([1, 1, 2])
    gamma, beta = np.array([0.75, 0.25, 0.0]), np.array([0.25, 0.25, 0.5])
    expected = np.log(gamma + 1e-8) - np.log(beta + 1e-8)
    np.testing.assert_allclose(log_importance_ratio(target, raw), expected)


def test_agrees_with_reference_implementation(tmp_path, storage, real_texts, write_docs):
    from data_selection import HashedNgramDSIR

    raw_texts = real_texts["pile"][:200] + real_texts["news"][:100]
    target_texts = real_texts["wiki"]
    for name, texts in (("raw", raw_texts), ("target", target_texts)):
        with open(tmp_path / f"{name}.jsonl", "w") as handle:
            handle.writelines(json.dumps({"text": t}) + "\n" for t in texts)
    reference = HashedNgramDSIR(
        [str(tmp_path / "raw.jsonl")],
        [str(tmp_path / "target.jsonl")],
        cache_dir=str(tmp_path / "cache"),
        num_proc=1,
        ngrams=2,
        num_buckets=10_000,
        tokenizer="wordpunct",
        min_example_length=100,
    )
    reference.fit_importance_estimator(num_tokens_to_fit="auto")
    reference.compute_importance_weights()
    expected = np.load(tmp_path / "cache" / "log_importance_weights" / "0.npy")

    config = DSIRConfig(min_example_length=100)
    target = fit_dsir_target(storage, target_texts, config)
    np.testing.assert_array_equal(target / target.sum(), reference.target_probs)
    manifest = write_docs(document_rows(raw_texts, "web", "mix"), "quality_scored", "web", 64)
    out = select_dsir(storage, manifest, "web", target, config)
    kept = _read(storage, out.shards)
    drops = _read(storage, out.drops)
    ids, kept_weights = kept.column("id").to_pylist(), kept.column(WEIGHT_COLUMN).to_pylist()
    ours = dict(zip(ids, kept_weights, strict=True))
    for row in drops.to_pylist():
        ours[row["id"]] = json.loads(row["detail"])[WEIGHT_COLUMN]
    weights = np.array([ours[f"mix/{i}"] for i in range(len(raw_texts))])
    assert spearmanr(weights, expected).statistic >= 0.99
    np.testing.assert_allclose(weights, expected, rtol=1e-9, atol=1e-6)
