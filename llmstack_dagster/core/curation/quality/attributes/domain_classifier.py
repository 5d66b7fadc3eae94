"""Domain category among the 26 labels of NVIDIA's domain classifier.

Default: zero-shot, cosine similarity between the document's MiniLM embedding and an embedded
description of each category, softmax with a temperature. HF option: ``nvidia/domain-classifier``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from pydantic import BaseModel

from llmstack_dagster.core.curation.quality.attributes.embeddings import embed
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
    backend: Literal["zero_shot", "hf"] = "zero_shot"
    hf_model: str = "nvidia/domain-classifier"
    temperature: float = 0.05


DomainPredictor = Callable[[list[str]], tuple[list[str], np.ndarray]]


def load_domain_classifier(config: DomainClassifierConfig) -> DomainPredictor:
    """A function texts -> (labels, probability of each label)."""
    if config.backend == "hf":
        predict_proba, labels = nvidia_deberta_classifier(config.hf_model)

        def hf_predict(texts: list[str]) -> tuple[list[str], np.ndarray]:
            probs = predict_proba(texts)
            best = probs.argmax(axis=1)
            return [labels[i] for i in best], probs[np.arange(len(texts)), best]

        return hf_predict
    prototypes = embed(
        [f"{label.replace('_', ' ')}: {desc}" for label, desc in DOMAIN_DESCRIPTIONS.items()]
    )

    def zero_shot(texts: list[str]) -> tuple[list[str], np.ndarray]:
        logits = embed(texts) @ prototypes.T / config.temperature
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        best = probs.argmax(axis=1)
        return [DOMAIN_LABELS[i] for i in best], probs[np.arange(len(texts)), best]

    return zero_shot
