"""Attribute sanity on real data from ../shared/data (texts unseen by the classifier)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from quality_data import (
    book_texts,
    code_texts,
    halves,
    news_texts,
    rejected_replies,
    web_texts,
    wiki_texts,
)

from llmstack_dagster.core.curation.quality.attributes.domain_classifier import (
    DomainClassifierConfig,
    load_domain_classifier,
)
from llmstack_dagster.core.curation.quality.attributes.quality_classifier import (
    QualityClassifierConfig,
    load_quality_classifier,
)
from llmstack_dagster.core.curation.quality.attributes.toxicity import (
    ToxicityConfig,
    load_toxicity_scorer,
)
from llmstack_dagster.core.curation.quality.reference_lm import (
    ReferenceLM,
    load_perplexity_model,
)
from llmstack_dagster.core.storage import Storage

SAMPLE = 40


def test_code_is_computers_more_often_than_news(shared_data: Path) -> None:
    classify = load_domain_classifier(DomainClassifierConfig())
    code, _ = classify(code_texts(shared_data)[::8][:SAMPLE])
    news, _ = classify(news_texts(shared_data)[::10][:SAMPLE])
    share = {name: np.mean([label == "Computers_and_Electronics" for label in labels])
             for name, labels in (("code", code), ("news", news))}  # fmt: skip
    assert share["code"] > share["news"] + 0.3


def test_rejected_replies_are_more_toxic_than_wiki_bios(shared_data: Path) -> None:
    score = load_toxicity_scorer(ToxicityConfig())
    rejected = score(rejected_replies(shared_data)[:500])
    wiki = score(wiki_texts(shared_data))
    assert ((rejected >= 0) & (rejected <= 1)).all()
    assert rejected.mean() > 2 * wiki.mean()


def test_quality_classifier_ranks_reference_above_the_tail_bucket(
    lm_storage: Storage, reference_lm: ReferenceLM, shared_data: Path
) -> None:
    """The shared web files are all CCNet 'head', so the lowest bucket is rebuilt honestly:
    unseen web docs whose perplexity under our reference LM falls in our tail bucket."""
    model = load_perplexity_model(lm_storage, reference_lm, "/nonexistent")
    tail = [t for t in halves(web_texts(shared_data))[1]
            if (model.perplexity(t) or np.inf) >= reference_lm.bucket_cutoffs[1]]  # fmt: skip
    unseen_reference = (
        halves(wiki_texts(shared_data))[1][:40] + halves(book_texts(shared_data))[1][:40]
    )
    predict = load_quality_classifier(
        QualityClassifierConfig(), lm_storage.read_bytes(reference_lm.classifier_path)
    )
    _, p_tail = predict(tail)
    labels, p_ref = predict(unseen_reference)
    assert len(tail) >= 15
    assert p_ref.mean() > p_tail.mean() + 0.3
    # pairwise ranking (ROC AUC): a random reference doc beats a random tail doc
    assert (p_ref[:, None] > p_tail[None, :]).mean() > 0.85
    assert labels.count("high") > len(labels) / 2
