"""Three-class quality attribute (high / medium / low).

Default: the pipeline's own classifier, trained by ``reference_lm``
(:mod:`~llmstack_dagster.core.curation.quality.attributes.training`): logistic regression on
hashed word n-grams (or, with ``features: minilm``, on MiniLM sentence embeddings), positives =
reference corpus, negatives = a random sample of raw web text (the DCLM and FineWeb-Edu recipe).
``p`` = P(reference-like); the low-quality score is ``1 - p``.
HF option: ``nvidia/quality-classifier-deberta`` (labels High / Medium / Low; the low-quality
score is ``1 - P(High)``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from pydantic import BaseModel
from sklearn.base import ClassifierMixin

from llmstack_dagster.core.curation.quality.attributes.features import (
    DocumentFeatures,
    FeatureKind,
)
from llmstack_dagster.core.curation.quality.attributes.hf import nvidia_deberta_classifier

QUALITY_LABELS = ("high", "medium", "low")


class QualityClassifierConfig(BaseModel):
    backend: Literal["pipeline", "hf"] = "pipeline"
    features: FeatureKind = "hashed"
    hf_model: str = "nvidia/quality-classifier-deberta"
    high_min_prob: float = 2 / 3
    low_max_prob: float = 1 / 3
    regularization_c: float = 10.0


QualityPredictor = Callable[[DocumentFeatures], tuple[list[str], np.ndarray]]


def quality_labels(p_high: np.ndarray, config: QualityClassifierConfig) -> list[str]:
    """high when ``p >= high_min_prob``, low when ``p < low_max_prob``, else medium."""
    return [
        "high" if p >= config.high_min_prob else "low" if p < config.low_max_prob else "medium"
        for p in p_high
    ]


def reference_probability(model: ClassifierMixin, x: object) -> np.ndarray:
    """P(class 1 = reference-like) under a trained classifier (0 if it never saw class 1)."""
    prob = model.predict_proba(x)
    classes = list(model.classes_)
    return prob[:, classes.index(1)] if 1 in classes else np.zeros(prob.shape[0])


def load_quality_classifier(
    config: QualityClassifierConfig,
    model: ClassifierMixin | None,
    model_features: FeatureKind | None = None,
) -> QualityPredictor:
    """A function features -> (labels, P(high quality)); ``model`` (trained on
    ``model_features``) comes from ``reference_lm``."""
    if config.backend == "hf":
        predict_proba, labels = nvidia_deberta_classifier(config.hf_model)
        high = [name.lower() for name in labels].index("high")

        def hf_predict(features: DocumentFeatures) -> tuple[list[str], np.ndarray]:
            probs = predict_proba(features.texts)
            return [labels[i].lower() for i in probs.argmax(axis=1)], probs[:, high]

        return hf_predict
    if model is None:
        raise ValueError("the pipeline quality classifier needs the model trained by reference_lm")
    if model_features != config.features:
        raise ValueError(f"the quality classifier was trained on {model_features!r} features but "
                         f"{config.features!r} are configured; align the reference_lm and "
                         "quality_scored configs")  # fmt: skip

    def predict(features: DocumentFeatures) -> tuple[list[str], np.ndarray]:
        p_high = reference_probability(model, features.of_kind(config.features))
        return quality_labels(p_high, config), p_high

    return predict
