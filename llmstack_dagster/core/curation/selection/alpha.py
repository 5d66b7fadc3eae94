"""Alpha (temperature) sampling over languages: ``p_i ∝ q_i ** alpha``.

``q_i`` is language ``i``'s natural share of the tokens. Papers write the same rule in two
conventions: the exponent form ``q ** alpha`` (alpha < 1 flattens towards small languages,
alpha > 1 sharpens towards large ones; the seed uses alpha = 1.3) and the temperature form
``q ** (1 / T)`` (T > 1 flattens), so ``alpha = 1 / T``. Both are accepted; the plan names the
one used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, Field


class AlphaConfig(BaseModel):
    """Which convention and value; ``exponent()`` is the power applied to ``q``."""

    convention: Literal["alpha", "temperature"] = "alpha"
    alpha: float = Field(1.3, gt=0.0, description="p ∝ q**alpha (seed: 1.3)")
    temperature: float = Field(1.0, gt=0.0, description="p ∝ q**(1/T), used if convention=T")

    def exponent(self) -> float:
        return self.alpha if self.convention == "alpha" else 1.0 / self.temperature


def alpha_probabilities(sizes: Mapping[str, float], exponent: float) -> dict[str, float]:
    """Sampling probabilities ``q_i**exponent / sum_j q_j**exponent``; empty sources get 0."""
    total = sum(sizes.values())
    if total <= 0:
        return {name: 0.0 for name in sizes}
    powered = {name: (q / total) ** exponent if q > 0 else 0.0 for name, q in sizes.items()}
    norm = sum(powered.values())
    return {name: value / norm for name, value in powered.items()}


def capped_alpha_allocation(
    sizes: Mapping[str, float], budget: float, exponent: float, max_epochs: float | None
) -> dict[str, float]:
    """Tokens per language: ``budget`` split by the alpha probabilities, each language capped at
    ``max_epochs`` of its size; what a capped language cannot take is re-split over the others
    by their probabilities, and what nobody can take stays unallocated (so a large budget never
    repeats a small language hundreds of times). ``max_epochs=None`` disables the cap."""
    probs = alpha_probabilities(sizes, exponent)
    tokens = {name: 0.0 for name in sizes}
    open_units = {name for name, p in probs.items() if p > 0}
    remaining = float(budget)
    while open_units and remaining > 1e-9:
        mass = sum(probs[name] for name in open_units)
        capped = set()
        for name in open_units:
            share = remaining * probs[name] / mass
            room = float("inf") if max_epochs is None else max_epochs * sizes[name] - tokens[name]
            if share >= room:
                capped.add(name)
        if not capped:
            for name in open_units:
                tokens[name] += remaining * probs[name] / mass
            remaining = 0.0
            break
        for name in capped:
            room = max_epochs * sizes[name] - tokens[name]
            tokens[name] += room
            remaining -= room
        open_units -= capped
    return tokens
