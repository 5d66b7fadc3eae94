"""Keep/drop decision of a scored document under a preset: the list of reasons it fails."""

from __future__ import annotations

from typing import Any

from llmstack_dagster.core.curation.quality.presets import Preset
from llmstack_dagster.core.curation.quality.rules import Rule, failed_rules


def failed_reasons(
    row: dict[str, Any],
    rules: dict[str, list[Rule]],
    max_perplexity: float | None,
    preset: Preset,
    least_toxic_below: float | None,
) -> list[str]:
    """All reasons ``row`` fails, in a fixed order; the first is the drop reason.

    ``rules`` maps rule set (prose, code) to its heuristic rules. The language filter (first, as
    in CCNet), perplexity and the quality classifier apply to prose only: code has no natural
    language, and the models would drop all of it.
    """
    if row["input_issue"]:
        return [row["input_issue"]]
    prose = row["rule_set"] == "prose"
    reasons: list[str] = []
    if prose:
        reasons = preset.language.reasons(row.get("language"), row.get("language_score"))
    reasons += failed_rules(row, rules[row["rule_set"]])
    if prose:
        pp = row["perplexity"]
        if max_perplexity is not None and (pp is None or pp > max_perplexity):
            reasons.append("perplexity")
        limit = preset.max_low_quality_score
        if limit is not None and 1.0 - row["quality_high_prob"] > limit:
            reasons.append("low_quality")
    if preset.max_toxicity is not None and row["toxicity"] > preset.max_toxicity:
        reasons.append("toxicity")
    if least_toxic_below is not None and row["toxicity"] < least_toxic_below:
        reasons.append("least_toxic")
    return reasons
