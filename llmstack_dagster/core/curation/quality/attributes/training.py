"""Train the pipeline's own attribute classifiers on the reference_lm sample, in one pass.

Quality: positives = reference documents, negatives = raw web (the DCLM / FineWeb-Edu recipe),
logistic regression on the configured features (hashed n-grams by default, or MiniLM
embeddings). Domain: logistic regression on hashed n-grams, taught by the MiniLM zero-shot
classifier's labels. The sample is embedded once; those embeddings give the domain labels and a
MiniLM quality classifier, and the fast classifiers' agreement with MiniLM on the held-out split
is reported (accuracy of labels, Spearman correlation of scores).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import joblib
import numpy as np
from pydantic import BaseModel, Field
from scipy.stats import spearmanr
from sklearn.base import ClassifierMixin
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from llmstack_dagster.core.curation.quality.attributes.domain_classifier import (
    DomainClassifierConfig,
    zero_shot_domains,
)
from llmstack_dagster.core.curation.quality.attributes.embeddings import EmbeddingConfig
from llmstack_dagster.core.curation.quality.attributes.features import (
    DocumentFeatures,
    FeatureKind,
)
from llmstack_dagster.core.curation.quality.attributes.quality_classifier import (
    QualityClassifierConfig,
    quality_labels,
    reference_probability,
)


class AttributeTrainingConfig(BaseModel):
    """What ``reference_lm`` trains; ``quality.features`` picks the quality classifier's input."""

    quality: QualityClassifierConfig = Field(default_factory=QualityClassifierConfig)
    domain: DomainClassifierConfig = Field(default_factory=DomainClassifierConfig)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    holdout_fraction: float = 0.2


@dataclass
class TrainedAttributes:
    """The stored classifiers: quality (on ``quality_features``) and domain (hashed n-grams)."""

    quality_features: FeatureKind
    quality: ClassifierMixin
    domain: ClassifierMixin


def _linear(x: Any, y: np.ndarray, c: float, seed: int) -> ClassifierMixin:
    """Balanced logistic regression; a constant classifier when ``y`` has a single class."""
    if len(set(y.tolist())) < 2:
        return DummyClassifier(strategy="most_frequent").fit(x, y)
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=1000, random_state=seed)
    return model.fit(x, y)


def _quality_metrics(
    p_fast: np.ndarray, p_minilm: np.ndarray, y: np.ndarray, config: QualityClassifierConfig
) -> dict[str, float]:
    both_classes = len(set(y.tolist())) > 1
    agree = np.mean(
        np.array(quality_labels(p_fast, config)) == np.array(quality_labels(p_minilm, config))
    )
    return {
        "heldout_accuracy": float(((p_fast >= 0.5) == y).mean()),
        "heldout_roc_auc": float(roc_auc_score(y, p_fast)) if both_classes else float("nan"),
        "minilm_heldout_accuracy": float(((p_minilm >= 0.5) == y).mean()),
        "minilm_heldout_roc_auc": float(roc_auc_score(y, p_minilm)) if both_classes
        else float("nan"),
        "agreement_with_minilm_accuracy": float(agree),
        "agreement_with_minilm_spearman": float(spearmanr(p_fast, p_minilm).statistic),
    }  # fmt: skip


def train_attribute_classifiers(
    positives: list[str], negatives: list[str], config: AttributeTrainingConfig, seed: int
) -> tuple[bytes, dict[str, float]]:
    """Fit on a seeded split; returns (serialized :class:`TrainedAttributes`, held-out metrics:
    quality vs the true labels and vs MiniLM, domain vs the MiniLM zero-shot labels)."""
    features = DocumentFeatures(positives + negatives, config.embedding)
    y = np.array([1] * len(positives) + [0] * len(negatives))
    domains = np.array(zero_shot_domains(features.embeddings, config.domain, config.embedding)[0])
    train, test = train_test_split(np.arange(len(y)), test_size=config.holdout_fraction,
                                   random_state=seed, stratify=y)  # fmt: skip
    c = config.quality.regularization_c
    x_quality = features.of_kind(config.quality.features)
    quality = _linear(x_quality[train], y[train], c, seed)
    minilm = _linear(features.embeddings[train], y[train], c, seed)
    domain = _linear(features.hashed[train], domains[train], config.domain.regularization_c, seed)
    metrics = _quality_metrics(reference_probability(quality, x_quality[test]),
                               reference_probability(minilm, features.embeddings[test]), y[test],
                               config.quality)  # fmt: skip
    predicted = domain.predict(features.hashed[test])
    metrics["domain_agreement_with_minilm_accuracy"] = float((predicted == domains[test]).mean())
    metrics["domain_labels_seen"] = float(len(set(domains[train].tolist())))
    metrics["train_docs"] = float(len(train))
    metrics["heldout_docs"] = float(len(test))
    buffer = io.BytesIO()
    joblib.dump(TrainedAttributes(config.quality.features, quality, domain), buffer)
    return buffer.getvalue(), metrics


def load_trained_attributes(model_bytes: bytes) -> TrainedAttributes:
    """The classifiers written by :func:`train_attribute_classifiers`."""
    trained = joblib.load(io.BytesIO(model_bytes))
    if not isinstance(trained, TrainedAttributes):
        raise ValueError("the stored attribute classifiers predate this version; rematerialize "
                         "reference_lm")  # fmt: skip
    return trained
