"""Use-case presets (Longpre et al. 2023, "A Pretrainer's Guide to Training Data").

All presets apply the heuristics (prose or code rules) and the perplexity cut; they differ in the
attribute filters. Sources and reasoning: ``references/quality-presets.md``.
"""

from __future__ import annotations

from pydantic import BaseModel


class Preset(BaseModel):
    name: str
    max_low_quality_score: float | None = None  # drop when 1 - P(high quality) > T
    max_toxicity: float | None = None  # drop when toxicity > this
    drop_least_toxic_fraction: float | None = None  # inverse filter: drop the least toxic share


PRESETS: dict[str, Preset] = {
    "general": Preset(name="general", max_low_quality_score=0.975),
    "toxicity-identification": Preset(
        name="toxicity-identification", drop_least_toxic_fraction=0.10
    ),
    "safety-critical": Preset(
        name="safety-critical", max_low_quality_score=0.975, max_toxicity=0.5
    ),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown quality preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]
