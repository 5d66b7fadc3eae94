"""Use-case presets (Longpre et al. 2023, "A Pretrainer's Guide to Training Data").

All presets apply the language filter, the heuristics (prose or code rules) and the perplexity
cut; they differ in the attribute filters. Sources and reasoning:
``references/quality-presets.md`` and, for the language filter, ``references/language-id.md``.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

CCNET_MIN_LANGUAGE_SCORE = 0.5  # cc_net mine.py: Config.lang_threshold (any language)
FINEWEB_MIN_LANGUAGE_SCORE = 0.65  # FineWeb: English with lid.176 probability >= 0.65


class LanguageFilter(BaseModel):
    """Keep prose whose identified language is one of ``languages`` (None: any language) with
    a language-ID probability of at least ``min_score`` (None: no confidence cut)."""

    languages: list[str] | None = None
    min_score: float | None = Field(CCNET_MIN_LANGUAGE_SCORE, ge=0.0, le=1.0)

    def reasons(self, language: str | None, score: float | None) -> list[str]:
        """``language`` and/or ``language_score`` when a document fails; [] when unscored."""
        if score is None:
            return []
        failed = []
        if self.languages is not None and language not in self.languages:
            failed.append("language")
        if self.min_score is not None and score < self.min_score:
            failed.append("language_score")
        return failed


FINEWEB_ENGLISH = LanguageFilter(languages=["en"], min_score=FINEWEB_MIN_LANGUAGE_SCORE)


class Preset(BaseModel):
    name: str
    language: LanguageFilter = Field(default_factory=LanguageFilter)  # CCNet's: any, >= 0.5
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
