"""CCNet perplexity equals a direct kenlm computation of the formula, in both scoring modes."""

from __future__ import annotations

from pathlib import Path

import kenlm
import numpy as np
import sentencepiece as spm
from quality_data import halves, web_texts

from llmstack_dagster.core.curation.quality.perplexity import (
    PerplexityModel,
    ccnet_bucket,
    scored_segments,
)
from llmstack_dagster.core.curation.quality.reference_lm import ReferenceLM, load_perplexity_model
from llmstack_dagster.core.storage import Storage

DOC = "The Old Mill stood by the river since 1820.\n\nIts wheel turned for ninety years.\n"
# normalized by hand: lowercase, digits to 0; CCNet's document mode drops the newlines
LINES = ["the old mill stood by the river since 0000.", "its wheel turned for ninety years."]


def _direct(storage: Storage, ref: ReferenceLM, segments: list[str]) -> float:
    lm = kenlm.Model(storage.local_path(ref.kenlm_path))
    sp = spm.SentencePieceProcessor(model_file=storage.local_path(ref.sp_path))
    total = length = 0.0
    for segment in segments:
        pieces = sp.encode(segment, out_type=str)
        total += lm.score(" ".join(pieces), bos=True, eos=True)
        length += len(pieces) + 1
    return 10 ** (-total / length)


def test_document_scoring_is_the_default_and_matches_kenlm(
    lm_storage: Storage, reference_lm: ReferenceLM
) -> None:
    assert reference_lm.scoring == "document"
    model = load_perplexity_model(lm_storage, reference_lm, "/nonexistent")
    assert model.scoring == "document"
    expected = _direct(lm_storage, reference_lm, ["".join(LINES)])
    assert model.perplexity(DOC) == round(expected, 1)
    assert model.perplexity("\n \n") is None


def test_line_scoring_matches_kenlm(lm_storage: Storage, reference_lm: ReferenceLM) -> None:
    model = PerplexityModel(
        lm_storage.local_path(reference_lm.kenlm_path),
        lm_storage.local_path(reference_lm.sp_path),
        scoring="line",
    )
    line_pp = model.perplexity(DOC)
    assert line_pp == round(_direct(lm_storage, reference_lm, LINES), 1)
    assert line_pp != load_perplexity_model(lm_storage, reference_lm, "/x").perplexity(DOC)
    assert model.perplexity("\n \n") is None


def test_cutoffs_are_web_percentiles_in_the_same_mode(
    lm_storage: Storage, reference_lm: ReferenceLM, shared_data: Path
) -> None:
    web = halves(web_texts(shared_data))[0]  # the fixture's web sample (all of it fits)
    paths = (lm_storage.local_path(reference_lm.kenlm_path),
             lm_storage.local_path(reference_lm.sp_path))  # fmt: skip
    percentiles = {}
    for mode in ("document", "line"):
        model = PerplexityModel(*paths, scoring=mode)
        scores = [model.perplexity(t) for t in web]
        percentiles[mode] = tuple(np.percentile([p for p in scores if p is not None], (30, 60)))
    assert reference_lm.bucket_cutoffs == percentiles["document"] != percentiles["line"]


def test_scored_segments() -> None:
    assert scored_segments(DOC, "document") == ["".join(LINES)]
    assert scored_segments(DOC, "line") == LINES
    assert scored_segments(" \n\t\n", "document") == []


def test_old_reference_records_score_lines(reference_lm: ReferenceLM) -> None:
    record = reference_lm.model_dump(mode="json", exclude={"scoring"})
    assert ReferenceLM.model_validate(record).scoring == "line"


def test_buckets() -> None:
    cutoffs = (100.0, 300.0)
    assert [ccnet_bucket(p, cutoffs) for p in (50.0, 100.0, 299.0, 300.0)] == [
        "head", "middle", "middle", "tail"]  # fmt: skip
    assert ccnet_bucket(None, cutoffs) is None
