"""CCNet perplexity equals a direct kenlm computation of the formula."""

from __future__ import annotations

import kenlm
import pytest
import sentencepiece as spm

from llmstack_dagster.core.curation.quality.perplexity import ccnet_bucket
from llmstack_dagster.core.curation.quality.reference_lm import ReferenceLM, load_perplexity_model
from llmstack_dagster.core.storage import Storage

DOC = "The Old Mill stood by the river since 1820.\n\nIts wheel turned for ninety years.\n"


def test_perplexity_matches_direct_kenlm(lm_storage: Storage, reference_lm: ReferenceLM) -> None:
    model = load_perplexity_model(lm_storage, reference_lm, "/nonexistent")
    lm = kenlm.Model(lm_storage.local_path(reference_lm.kenlm_path))
    sp = spm.SentencePieceProcessor(model_file=lm_storage.local_path(reference_lm.sp_path))
    # normalized by hand: lowercase, digits to 0, blank line skipped
    lines = ["the old mill stood by the river since 0000.", "its wheel turned for ninety years."]
    total = length = 0.0
    for line in lines:
        pieces = sp.encode(line, out_type=str)
        total += lm.score(" ".join(pieces), bos=True, eos=True)
        length += len(pieces) + 1
    assert model.perplexity(DOC) == pytest.approx(10 ** (-total / length), rel=1e-9)
    assert model.perplexity("\n \n") is None


def test_buckets() -> None:
    cutoffs = (100.0, 300.0)
    assert [ccnet_bucket(p, cutoffs) for p in (50.0, 100.0, 299.0, 300.0)] == [
        "head", "middle", "middle", "tail"]  # fmt: skip
    assert ccnet_bucket(None, cutoffs) is None
