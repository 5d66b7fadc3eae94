"""Attribute sanity on real data from ../shared/data (texts unseen by the classifiers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
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
    DOMAIN_LABELS,
    DomainClassifierConfig,
    load_domain_classifier,
)
from llmstack_dagster.core.curation.quality.attributes.features import DocumentFeatures
from llmstack_dagster.core.curation.quality.attributes.quality_classifier import (
    QualityClassifierConfig,
    load_quality_classifier,
)
from llmstack_dagster.core.curation.quality.attributes.toxicity import (
    ToxicityConfig,
    load_toxicity_scorer,
)
from llmstack_dagster.core.curation.quality.attributes.training import (
    TrainedAttributes,
    load_trained_attributes,
)
from llmstack_dagster.core.curation.quality.reference_lm import (
    ReferenceLM,
    load_perplexity_model,
)
from llmstack_dagster.core.storage import Storage

SAMPLE = 40


@pytest.fixture(scope="module")
def trained(lm_storage: Storage, reference_lm: ReferenceLM) -> TrainedAttributes:
    return load_trained_attributes(lm_storage.read_bytes(reference_lm.classifier_path))


def test_code_is_computers_more_often_than_news_zero_shot(shared_data: Path) -> None:
    classify = load_domain_classifier(DomainClassifierConfig(backend="zero_shot"))
    code, _ = classify(DocumentFeatures(code_texts(shared_data)[::8][:SAMPLE]))
    news, _ = classify(DocumentFeatures(news_texts(shared_data)[::10][:SAMPLE]))
    share = {name: np.mean([label == "Computers_and_Electronics" for label in labels])
             for name, labels in (("code", code), ("news", news))}  # fmt: skip
    assert share["code"] > share["news"] + 0.3


@pytest.mark.slow
def test_pipeline_domain_classifier_tells_plays_from_biographies(
    trained: TrainedAttributes, shared_data: Path
) -> None:
    """The hashed-n-gram student, taught by the zero-shot labels of the training sample, labels
    unseen Shakespeare as literature far more often than unseen WikiBio paragraphs."""
    classify = load_domain_classifier(DomainClassifierConfig(), trained.domain)
    books, p_books = classify(DocumentFeatures(halves(book_texts(shared_data))[1][:SAMPLE]))
    wiki, _ = classify(DocumentFeatures(halves(wiki_texts(shared_data))[1][:SAMPLE]))
    assert set(books + wiki) <= set(DOMAIN_LABELS)
    assert ((p_books > 0) & (p_books <= 1)).all()
    share = {name: np.mean([label == "Books_and_Literature" for label in labels])
             for name, labels in (("books", books), ("wiki", wiki))}  # fmt: skip
    assert share["books"] > share["wiki"] + 0.3


def test_rejected_replies_are_more_toxic_than_wiki_bios(shared_data: Path) -> None:
    score = load_toxicity_scorer(ToxicityConfig())
    rejected = score(rejected_replies(shared_data)[:500])
    wiki = score(wiki_texts(shared_data))
    assert ((rejected >= 0) & (rejected <= 1)).all()
    assert rejected.mean() > 2 * wiki.mean()


def test_quality_classifier_ranks_reference_above_the_tail_bucket(
    lm_storage: Storage, reference_lm: ReferenceLM, trained: TrainedAttributes, shared_data: Path
) -> None:
    """The shared web files are all CCNet 'head', so the lowest bucket is rebuilt honestly:
    unseen web docs whose perplexity under our reference LM falls in our tail bucket."""
    model = load_perplexity_model(lm_storage, reference_lm, "/nonexistent")
    tail = [t for t in halves(web_texts(shared_data))[1]
            if (model.perplexity(t) or np.inf) >= reference_lm.bucket_cutoffs[1]]  # fmt: skip
    unseen_reference = (
        halves(wiki_texts(shared_data))[1][:40] + halves(book_texts(shared_data))[1][:40]
    )
    assert trained.quality_features == "hashed"
    predict = load_quality_classifier(QualityClassifierConfig(), trained.quality, "hashed")
    _, p_tail = predict(DocumentFeatures(tail))
    labels, p_ref = predict(DocumentFeatures(unseen_reference))
    assert len(tail) >= 15
    assert p_ref.mean() > p_tail.mean() + 0.3
    # pairwise ranking (ROC AUC): a random reference doc beats a random tail doc
    assert (p_ref[:, None] > p_tail[None, :]).mean() > 0.85
    assert labels.count("high") > len(labels) / 2


def test_quality_classifier_refuses_features_it_was_not_trained_on(
    trained: TrainedAttributes,
) -> None:
    with pytest.raises(ValueError, match="trained on 'hashed' features but 'minilm'"):
        load_quality_classifier(QualityClassifierConfig(features="minilm"), trained.quality,
                                trained.quality_features)  # fmt: skip


def test_training_reports_agreement_with_minilm(
    reference_lm: ReferenceLM, trained: TrainedAttributes
) -> None:
    assert set(trained.domain.classes_) <= set(DOMAIN_LABELS)
    metrics = reference_lm.classifier_metrics
    assert metrics["train_docs"] + metrics["heldout_docs"] > 200
    assert metrics["heldout_roc_auc"] > 0.8 and metrics["minilm_heldout_roc_auc"] > 0.8
    for name in ("agreement_with_minilm_accuracy", "domain_agreement_with_minilm_accuracy"):
        assert 0 < metrics[name] <= 1
    assert metrics["agreement_with_minilm_spearman"] > 0.3
    assert metrics["domain_labels_seen"] >= 2
