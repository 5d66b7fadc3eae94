"""The quality_scored runner end to end on real web docs plus bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.compute as pc
import pytest
from quality_data import code_texts, halves, web_texts, write_docs

from llmstack_dagster.core.curation.quality.reference_lm import ReferenceLM
from llmstack_dagster.core.curation.quality.scoring import (
    SCORED_SCHEMA,
    QualityConfig,
    score_quality,
)
from llmstack_dagster.core.storage import Storage, iter_shard_tables, read_manifest

BAD = ["", "word " * 2_100_000, os.urandom(2048).decode("utf-8", errors="replace")]


def _scored(storage: Storage, manifest) -> list[dict]:
    return [row for _, t in iter_shard_tables(storage, manifest.drops) for row in t.to_pylist()]


def test_score_web_partition(lm_storage: Storage, reference_lm: ReferenceLM,
                             shared_data: Path) -> None:  # fmt: skip
    texts = halves(web_texts(shared_data))[1][:30] + BAD
    docs = write_docs(lm_storage, "in_web", "web", texts)
    manifest = score_quality(lm_storage, docs, "web", reference_lm, QualityConfig())
    assert manifest == read_manifest(lm_storage, "quality_scored", "web")
    assert manifest.counts["in"] == len(texts) == manifest.rows + manifest.dropped
    scored = [lm_storage.read_table(s["path"]) for s in manifest.extra["scored_shards"]]
    assert all(t.schema == SCORED_SCHEMA for t in scored)
    rows = [r for t in scored for r in t.to_pylist()]
    assert len(rows) == len(texts)
    by_text = {r["text"][:50]: r for r in rows}
    assert by_text[""]["reasons"] == ["empty"]
    assert by_text[BAD[1][:50]]["reasons"] == ["too_long"]
    assert by_text[BAD[2][:50]]["reasons"] == ["binary"]
    drops = _scored(lm_storage, manifest)
    assert {d["reason"] for d in drops} >= {"empty", "too_long", "binary"}
    assert all(d["stage"] == "quality_scored" and d["reason"] == json.loads(d["detail"])[0]
               for d in drops)  # fmt: skip
    ok = [r for r in rows if r["input_issue"] is None]
    assert all(r["perplexity"] > 1 and r["ccnet_bucket"] and r["domain_label"] for r in ok)
    assert all(r["keep"] == (not r["reasons"]) for r in rows)
    extra = manifest.extra
    assert lm_storage.read_bytes(extra["perplexity_histogram_png"]).startswith(b"\x89PNG")
    assert set(extra["keep_rate_per_reason"]) >= {"empty", "binary"}
    assert sum(extra["distributions"]["quality_label"].values()) == len(ok)
    kept = sum(not r["reasons"] for r in rows)
    assert extra["keep_rate_per_domain"]["web"] == kept / len(rows)


def test_code_partition_uses_code_rules(lm_storage: Storage, reference_lm: ReferenceLM,
                                        shared_data: Path) -> None:  # fmt: skip
    docs = write_docs(lm_storage, "in_code", "code", code_texts(shared_data)[:20])
    manifest = score_quality(lm_storage, docs, "code", reference_lm, QualityConfig())
    table = lm_storage.read_table(manifest.extra["scored_shards"][0]["path"])
    assert pc.all(pc.equal(table["rule_set"], "code")).as_py()
    assert table["word_count"].null_count == table.num_rows
    assert manifest.rows >= 15  # prose heuristics would have dropped nearly all code


def test_another_preset_reuses_the_scores(lm_storage: Storage, reference_lm: ReferenceLM,
                                          shared_data: Path, monkeypatch) -> None:  # fmt: skip
    texts = halves(web_texts(shared_data))[1][:20]
    docs = write_docs(lm_storage, "in_reuse", "web", texts)
    first = score_quality(lm_storage, docs, "web", reference_lm, QualityConfig())
    assert first.extra["scores_reused"] is False

    def no_models(*args, **kwargs):
        raise AssertionError("the models must not run again for a new preset")

    monkeypatch.setattr("llmstack_dagster.core.curation.quality.scoring.load_scorers", no_models)
    second = score_quality(lm_storage, docs, "web", reference_lm,
                           QualityConfig(preset="toxicity-identification"))  # fmt: skip
    assert second.extra["scores_reused"] is True
    assert second.extra["preset"]["name"] == "toxicity-identification"
    assert second.counts["in"] == first.counts["in"] == second.rows + second.dropped
    assert second.extra["distributions"] == first.extra["distributions"]
    changed = docs.model_copy(update={"counts": {"changed": 1}})
    with pytest.raises(AssertionError, match="must not run again"):
        score_quality(lm_storage, changed, "web", reference_lm, QualityConfig())
