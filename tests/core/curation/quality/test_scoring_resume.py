"""A retried ``quality_scored`` run scores only the shards its failed attempt did not."""

from pathlib import Path

import pytest
from quality_data import halves, web_texts, write_docs
from support.resume import FailOnce

from llmstack_dagster.core.curation.quality import scoring
from llmstack_dagster.core.curation.quality.reference_lm import ReferenceLM
from llmstack_dagster.core.curation.quality.scoring import QualityConfig, score_quality
from llmstack_dagster.core.scale.shard_map import LocalShardMap
from llmstack_dagster.core.storage import ShardManifest, Storage


def test_a_retry_scores_only_the_shards_its_run_did_not(
    lm_storage: Storage, reference_lm: ReferenceLM, shared_data: Path, monkeypatch
) -> None:
    texts = halves(web_texts(shared_data))[1][:9]
    parts = [write_docs(lm_storage, f"resume_in{k}", "web", texts[k::3]) for k in range(3)]
    docs = ShardManifest(asset="resume_in", partition="web",
                         shards=[s for p in parts for s in p.shards])  # fmt: skip
    reference = scoring._score_pass(lm_storage, docs, False, reference_lm, QualityConfig(),
                                    "resume-ref", LocalShardMap(), "resume-ref/.work")  # fmt: skip
    spy = FailOnce(scoring.score_shard)
    monkeypatch.setattr(scoring, "score_shard", spy)
    with pytest.raises(RuntimeError, match="killed"):
        score_quality(lm_storage, docs, "resumed", reference_lm, QualityConfig(), resume_key="A")
    spy.retry()
    resumed = score_quality(lm_storage, docs, "resumed", reference_lm, QualityConfig(),
                            resume_key="A")  # fmt: skip
    assert spy.calls == 2 and resumed.counts["in"] == 9
    index = lm_storage.read_json("quality_scored/_scores/resumed/scores.json")
    scores = [lm_storage.read_bytes(s["path"]) for s in index["shards"]]
    assert scores == [lm_storage.read_bytes(s.path) for s in reference]
