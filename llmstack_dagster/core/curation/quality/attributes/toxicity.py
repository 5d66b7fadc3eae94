"""Toxicity in [0, 1]: alt-profanity-check (offline, linear model on human-labelled data) or a
Hugging Face toxicity classifier by model id."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from pydantic import BaseModel

from llmstack_dagster.core.curation.quality.attributes.hf import text_classification_pipeline

MAX_CHARS = 20_000
ToxicityScorer = Callable[[list[str]], np.ndarray]


class ToxicityConfig(BaseModel):
    backend: Literal["profanity_check", "hf"] = "profanity_check"
    hf_model: str = "s-nlp/roberta_toxicity_classifier"
    hf_toxic_label: str = "toxic"


def load_toxicity_scorer(config: ToxicityConfig) -> ToxicityScorer:
    """A function texts -> toxicity probabilities."""
    if config.backend == "hf":
        classify = text_classification_pipeline(config.hf_model)

        def hf_scores(texts: list[str]) -> np.ndarray:
            results = classify([t[:MAX_CHARS] for t in texts])
            toxic = config.hf_toxic_label.lower()
            return np.array(
                [next((s["score"] for s in r if s["label"].lower() == toxic), 0.0) for r in results]
            )

        return hf_scores
    from profanity_check import predict_prob

    def profanity_scores(texts: list[str]) -> np.ndarray:
        return np.asarray(predict_prob([t[:MAX_CHARS] for t in texts]), dtype=float)

    return profanity_scores
