"""UniMax across languages, then across the sources of each language.

The seed: "Multilingual: UniMax slightly better than alpha sampling" (Chung et al. 2023, who
allocate over languages with Algorithm 1). Level 1 runs UniMax over the languages' total sizes;
level 2 splits each language's tokens over its sampling units (a source's documents in that
language) by UniMax again, with the same epoch cap. One language reduces to UniMax over its
sources, so an English-only mixture plans exactly as before.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from llmstack_dagster.core.curation.selection.unimax import unimax_allocation


def language_totals(sizes: Mapping[str, float], language_of: Mapping[str, str]) -> dict[str, float]:
    """Tokens per language, summed over its units."""
    totals: dict[str, float] = defaultdict(float)
    for unit, size in sizes.items():
        totals[language_of[unit]] += size
    return dict(totals)


def language_unimax_allocation(
    sizes: Mapping[str, float],
    language_of: Mapping[str, str],
    budget: float,
    max_epochs: float = 1.0,
) -> dict[str, float]:
    """Tokens per unit: UniMax over languages, then over each language's units."""
    per_language = unimax_allocation(language_totals(sizes, language_of), budget, max_epochs)
    members: dict[str, dict[str, float]] = defaultdict(dict)
    for unit, size in sizes.items():
        members[language_of[unit]][unit] = size
    allocation: dict[str, float] = {}
    for language, tokens in per_language.items():
        allocation |= unimax_allocation(members[language], tokens, max_epochs)
    return allocation
