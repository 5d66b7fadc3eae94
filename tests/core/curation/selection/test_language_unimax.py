"""UniMax across languages, then across each language's sources; the mixture's language units."""

import pytest
from selection_docs import document_rows

from llmstack_dagster.core.curation.selection.language_unimax import (
    language_totals,
    language_unimax_allocation,
)
from llmstack_dagster.core.curation.selection.mixture import materialize_mixture, prose_unit
from llmstack_dagster.core.curation.selection.mixture_plan import MixtureConfig
from llmstack_dagster.core.curation.selection.unimax import unimax_allocation

SIZES = {"web:en": 700.0, "news:en": 200.0, "web:fr": 60.0, "web:de": 30.0, "wiki:de": 10.0}
LANGUAGE = {unit: unit.split(":")[1] for unit in SIZES}


def test_languages_first_then_sources():
    # languages en 900, fr 60, de 40; budget 300: de 40 (capped), fr 60 (capped), en 200;
    # inside en: 200 / 2 = 100 each; inside de: both at their one-epoch cap
    allocation = language_unimax_allocation(SIZES, LANGUAGE, 300)
    assert allocation == pytest.approx(
        {"web:de": 30, "wiki:de": 10, "web:fr": 60, "news:en": 100, "web:en": 100}
    )
    assert language_totals(allocation, LANGUAGE) == pytest.approx({"en": 200, "fr": 60, "de": 40})


def test_one_language_is_plain_unimax_over_sources():
    sizes = {"a": 10.0, "b": 20.0, "c": 70.0}
    one = dict.fromkeys(sizes, "en")
    for budget, epochs in ((60, 1.0), (300, 1.0), (300, 2.0)):
        assert language_unimax_allocation(sizes, one, budget, epochs) == pytest.approx(
            unimax_allocation(sizes, budget, epochs)
        )


def test_epoch_cap_at_both_levels():
    allocation = language_unimax_allocation(SIZES, LANGUAGE, 10_000, max_epochs=2.0)
    assert allocation == pytest.approx({u: 2 * s for u, s in SIZES.items()})


def test_mixture_plans_units_per_language(storage, real_texts, write_docs):
    english = real_texts["pile"][:120]
    # the same real texts relabelled as two smaller "languages", as language ID would label them
    rows = document_rows(english + english[:30] + english[30:40], "web", "crawl",
                         language=["en"] * 120 + ["fr"] * 30 + ["de"] * 10)  # fmt: skip
    selected = {"web": write_docs(rows, "dsir_selected", "web", 500)}
    whole = materialize_mixture(storage, selected, MixtureConfig(token_budget=10**9))
    available = {r["language"]: r["available_tokens"] for r in whole.extra["plan"]["languages"]}
    assert available["en"] > 3 * available["fr"] > 3 * available["de"]
    budget = 2 * available["fr"] + available["de"]  # de and fr fit whole, en gets its share
    manifest = materialize_mixture(storage, selected, MixtureConfig(token_budget=budget))
    plan = manifest.extra["plan"]
    units = {u["unit"]: u for u in plan["units"]}
    assert set(units) == {prose_unit("crawl", x) for x in ("en", "fr", "de")} == {
        "crawl:en", "crawl:fr", "crawl:de"}  # fmt: skip
    assert {u["language"] for u in units.values()} == {"en", "fr", "de"}
    languages = {row["language"]: row for row in plan["languages"]}
    # the small languages are taken whole (one epoch), English gets the rest of the budget
    assert languages["de"]["epochs"] == languages["fr"]["epochs"] == pytest.approx(1.0)
    assert languages["en"]["sampled_tokens"] == pytest.approx(available["fr"])
    assert languages["en"]["epochs"] < 1.0
    assert languages["de"]["sampled_tokens"] < languages["fr"]["sampled_tokens"]
    assert sum(r["sampled_tokens"] for r in languages.values()) == pytest.approx(
        plan["planned_tokens"]
    )
    assert all("|language=" in b["key"] for b in plan["buckets"])
    assert prose_unit("crawl", None) == "crawl"
