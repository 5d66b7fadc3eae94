"""The reference LM runner on the real wiki + books sample."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from llmstack_dagster.core.curation.quality import kenlm_tools
from llmstack_dagster.core.curation.quality.reference_lm import ReferenceLM
from llmstack_dagster.core.storage import ShardManifest, Storage, read_manifest


def test_reference_lm_artifacts(lm_storage: Storage, reference_manifest: ShardManifest,
                                reference_lm: ReferenceLM) -> None:  # fmt: skip
    assert read_manifest(lm_storage, "reference_lm", None) == reference_manifest
    assert reference_lm.order == 5 and sorted(reference_lm.ngram_counts) == [1, 2, 3, 4, 5]
    assert 500 < reference_lm.vocab_size <= 4000
    assert reference_lm.model_bytes == lm_storage.size(reference_lm.kenlm_path) > 0
    assert not any(p.endswith(".arpa") for p in lm_storage.list("reference_lm"))
    low, high = reference_lm.bucket_cutoffs
    assert 1 < low < high
    # the reference text is far more predictable than web text under its own model
    assert reference_lm.reference_perplexity_median < reference_lm.web_perplexity_median
    assert reference_lm.classifier_metrics["heldout_roc_auc"] > 0.8


def test_missing_binary_has_a_clear_message(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:  # fmt: skip
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="lmplz.*scripts/setup.sh"):
        kenlm_tools.find_kenlm_binary("lmplz")
