"""Domain category among the 26 labels of NVIDIA's domain classifier.

Default (``pipeline``): logistic regression on hashed word n-grams, trained by ``reference_lm``
on the labels of the MiniLM zero-shot classifier (:mod:`.training`). ``zero_shot``: cosine
similarity between the document's sentence embedding and an embedded description of each
category, softmax with a temperature. HF option: ``nvidia/domain-classifier``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import BaseModel
from sklearn.base import ClassifierMixin

from llmstack_dagster.core.curation.quality.attributes.embeddings import EmbeddingConfig, embed
from llmstack_dagster.core.curation.quality.attributes.features import DocumentFeatures
from llmstack_dagster.core.curation.quality.attributes.hf import nvidia_deberta_classifier

DOMAIN_DESCRIPTIONS = {
    "Adult": "adult content, sexual material, pornography, erotica, dating for sex",
    "Arts_and_Entertainment": "movies, music, television, celebrities, theatre, visual art",
    "Autos_and_Vehicles": "cars, trucks, motorcycles, vehicle repair, driving, auto industry",
    "Beauty_and_Fitness": "cosmetics, skin care, hair, fashion, fitness training, body building",
    "Books_and_Literature": "books, novels, poetry, plays, literature, authors, fiction, drama",
    "Business_and_Industrial": "companies, business management, manufacturing, industry, trade",
    "Computers_and_Electronics": "computers, software, programming, source code, functions, "
    "libraries, operating systems, electronics",
    "Finance": "banking, investing, loans, stock market, insurance, money and accounting",
    "Food_and_Drink": "cooking, recipes, restaurants, food, beverages, wine",
    "Games": "video games, board games, card games, puzzles, gaming",
    "Health": "medicine, diseases, treatment, doctors, hospitals, medical research, nutrition",
    "Hobbies_and_Leisure": "hobbies, crafts, collecting, outdoor recreation, leisure activities",
    "Home_and_Garden": "home improvement, furniture, interior decoration, gardening",
    "Internet_and_Telecom": "internet services, websites, email, mobile phones, telecommunications",
    "Jobs_and_Education": "jobs, careers, hiring, schools, universities, teaching, education",
    "Law_and_Government": "law, courts, legal cases, government, politics, public policy",
    "News": "news reports, current events, journalism, breaking news, world affairs",
    "Online_Communities": "forums, social networks, online discussions, blogs, user comments",
    "People_and_Society": "biographies, family, relationships, social issues, religion, culture",
    "Pets_and_Animals": "pets, dogs, cats, wildlife, animals, veterinary care",
    "Real_Estate": "houses for sale, property, renting apartments, real estate market",
    "Science": "physics, chemistry, biology, mathematics, scientific research, astronomy",
    "Sensitive_Subjects": "violence, crime, weapons, drugs, self-harm, tragedies, abuse",
    "Shopping": "online shopping, products, retail stores, discounts, consumer goods",
    "Sports": "sports, football, basketball, athletes, teams, competitions",
    "Travel_and_Transportation": "travel, tourism, hotels, flights, public transport",
}
DOMAIN_LABELS = tuple(DOMAIN_DESCRIPTIONS)


class DomainClassifierConfig(BaseModel):
    backend: Literal["pipeline", "zero_shot", "hf"] = "pipeline"
    hf_model: str = "nvidia/domain-classifier"
    temperature: float = 0.05
    regularization_c: float = 10.0


DomainPredictor = Callable[[DocumentFeatures], tuple[list[str], np.ndarray]]


def _best(probs: np.ndarray, labels: list[str] | tuple[str, ...]) -> tuple[list[str], np.ndarray]:
    best = probs.argmax(axis=1)
    return [labels[i] for i in best], probs[np.arange(len(best)), best]


@lru_cache(maxsize=2)
def _prototypes(embedding: EmbeddingConfig) -> np.ndarray:
    return embed([f"{label.replace('_', ' ')}: {desc}"
                  for label, desc in DOMAIN_DESCRIPTIONS.items()], embedding)  # fmt: skip


def zero_shot_domains(
    embeddings: np.ndarray, config: DomainClassifierConfig, embedding: EmbeddingConfig
) -> tuple[list[str], np.ndarray]:
    """(label, its probability) per unit-norm embedding: softmax of the cosine similarity to
    each category's embedded description over ``temperature``."""
    logits = embeddings @ _prototypes(embedding).T / config.temperature
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    return _best(probs / probs.sum(axis=1, keepdims=True), DOMAIN_LABELS)


def load_domain_classifier(
    config: DomainClassifierConfig,
    model: ClassifierMixin | None = None,
    embedding: EmbeddingConfig | None = None,
) -> DomainPredictor:
    """A function features -> (labels, probability of each label); ``model`` (on hashed
    n-grams) comes from ``reference_lm``."""
    if config.backend == "hf":
        predict_proba, labels = nvidia_deberta_classifier(config.hf_model)
        return lambda features: _best(predict_proba(features.texts), labels)
    if config.backend == "zero_shot":
        embedding = embedding or EmbeddingConfig()
        return lambda features: zero_shot_domains(features.embeddings, config, embedding)
    if model is None:
        raise ValueError("the pipeline domain classifier needs the model trained by reference_lm")
    labels = [str(label) for label in model.classes_]
    return lambda features: _best(model.predict_proba(features.hashed), labels)
