"""Three-class quality attribute (high / medium / low).

Default: the pipeline's own classifier, logistic regression on MiniLM sentence embeddings with
positives = reference corpus and negatives = a random sample of raw web text (the DCLM and
FineWeb-Edu recipe). ``p`` = P(reference-like); the low-quality score is ``1 - p``.
HF option: ``nvidia/quality-classifier-deberta`` (labels High / Medium / Low; the low-quality
score is ``1 - P(High)``).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Literal

import joblib
import numpy as np
from pydantic import BaseModel
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from llmstack_dagster.core.curation.quality.attributes.embeddings import embed
from llmstack_dagster.core.curation.quality.attributes.hf import nvidia_deberta_classifier

QUALITY_LABELS = ("high", "medium", "low")


class QualityClassifierConfig(BaseModel):
    backend: Literal["pipeline", "hf"] = "pipeline"
    hf_model: str = "nvidia/quality-classifier-deberta"
    high_min_prob: float = 2 / 3
    low_max_prob: float = 1 / 3
    regularization_c: float = 1.0
    holdout_fraction: float = 0.2


QualityPredictor = Callable[[list[str]], tuple[list[str], np.ndarray]]


def train_quality_classifier(
    positives: list[str], negatives: list[str], config: QualityClassifierConfig, seed: int
) -> tuple[bytes, dict[str, float]]:
    """Fit on a seeded split; returns (serialized model, held-out accuracy and ROC AUC)."""
    texts = positives + negatives
    y = np.array([1] * len(positives) + [0] * len(negatives))
    x = embed(texts)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=config.holdout_fraction, random_state=seed, stratify=y
    )
    model = LogisticRegression(
        C=config.regularization_c, class_weight="balanced", max_iter=1000, random_state=seed
    )
    model.fit(x_train, y_train)
    prob = model.predict_proba(x_test)[:, 1]
    metrics = {
        "heldout_accuracy": float(((prob >= 0.5) == y_test).mean()),
        "heldout_roc_auc": float(roc_auc_score(y_test, prob)),
        "train_docs": float(len(y_train)),
        "heldout_docs": float(len(y_test)),
    }
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue(), metrics


def _label(p: float, config: QualityClassifierConfig) -> str:
    if p >= config.high_min_prob:
        return "high"
    return "low" if p < config.low_max_prob else "medium"


def load_quality_classifier(
    config: QualityClassifierConfig, model_bytes: bytes | None
) -> QualityPredictor:
    """A function texts -> (labels, P(high quality)); ``model_bytes`` from training."""
    if config.backend == "hf":
        predict_proba, labels = nvidia_deberta_classifier(config.hf_model)
        high = [name.lower() for name in labels].index("high")

        def hf_predict(texts: list[str]) -> tuple[list[str], np.ndarray]:
            probs = predict_proba(texts)
            return [labels[i].lower() for i in probs.argmax(axis=1)], probs[:, high]

        return hf_predict
    if model_bytes is None:
        raise ValueError("the pipeline quality classifier needs the model trained by reference_lm")
    model: LogisticRegression = joblib.load(io.BytesIO(model_bytes))

    def predict(texts: list[str]) -> tuple[list[str], np.ndarray]:
        prob = model.predict_proba(embed(texts))[:, 1]
        return [_label(p, config) for p in prob], prob

    return predict
