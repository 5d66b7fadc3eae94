"""Language identification (bundled fastText lid.176) and the presets' language filter."""

from __future__ import annotations

from pathlib import Path

import pytest
from quality_data import halves, web_texts, write_docs

from llmstack_dagster.core.curation.quality.decision import failed_reasons
from llmstack_dagster.core.curation.quality.language import (
    LanguageIdConfig,
    LanguageIdentifier,
    bundled_model_path,
)
from llmstack_dagster.core.curation.quality.presets import (
    FINEWEB_ENGLISH,
    LanguageFilter,
    get_preset,
)
from llmstack_dagster.core.curation.quality.reference_lm import ReferenceLM
from llmstack_dagster.core.curation.quality.scoring import QualityConfig, score_quality
from llmstack_dagster.core.storage import Storage, iter_shard_tables

# written for these tests: one short paragraph per language
PARAGRAPHS = {
    "fr": "Le marché du village ouvre chaque samedi matin.\nLes habitants y achètent des "
    "légumes, du fromage et du pain frais avant de prendre un café sur la place.",
    "de": "Der Zug nach Hamburg hatte heute wieder zwanzig Minuten Verspätung.\nDie "
    "Fahrgäste warteten geduldig auf dem kalten Bahnsteig und lasen ihre Zeitungen.",
    "es": "La biblioteca municipal amplió su horario durante las vacaciones de verano.\n"
    "Muchos estudiantes aprovechan las mesas grandes para preparar sus exámenes.",
    "it": "Il piccolo ristorante sul porto prepara il pesce pescato la mattina stessa.\n"
    "Nei giorni di sole i tavoli all'aperto sono sempre tutti occupati.",
    "ru": "Вечером на набережной собираются музыканты и играют до поздней ночи.\n"
    "Туристы останавливаются, слушают и фотографируют закат над рекой.",
    "en": "The county council approved a new budget for road repairs on Tuesday.\nWork on "
    "the bridge is expected to start in the spring and last about three months.",
}


@pytest.fixture(scope="module")
def identifier() -> LanguageIdentifier:
    return LanguageIdentifier()


def test_identifies_written_paragraphs(identifier: LanguageIdentifier) -> None:
    languages, scores = identifier(list(PARAGRAPHS.values()))
    assert languages == list(PARAGRAPHS)
    assert all(0.65 <= s <= 1.0 for s in scores)


def test_blank_text_gets_a_low_score(identifier: LanguageIdentifier) -> None:
    _, scores = identifier(["   ", "\n\n"])
    assert all(s < 0.5 for s in scores)


def test_max_chars_classifies_the_prefix() -> None:
    mixed = PARAGRAPHS["de"] + "\n" + PARAGRAPHS["en"] * 5
    whole = LanguageIdentifier()([mixed])[0]
    prefix = LanguageIdentifier(LanguageIdConfig(max_chars=len(PARAGRAPHS["de"])))([mixed])[0]
    assert (whole, prefix) == (["en"], ["de"])
    assert Path(bundled_model_path()).name == "lid.176.ftz"


def test_language_filter_reasons() -> None:
    ccnet = LanguageFilter()
    assert ccnet.reasons("fr", 0.51) == []
    assert ccnet.reasons("fr", 0.49) == ["language_score"]
    assert ccnet.reasons(None, None) == []  # not identified (code): no language cut
    assert FINEWEB_ENGLISH.reasons("en", 0.7) == []
    assert FINEWEB_ENGLISH.reasons("en", 0.6) == ["language_score"]
    assert FINEWEB_ENGLISH.reasons("de", 0.3) == ["language", "language_score"]
    assert get_preset("general").language == ccnet


def test_language_reasons_come_first_and_skip_code() -> None:
    row = {"input_issue": None, "rule_set": "prose", "language": "de", "language_score": 0.9,
           "perplexity": 9000.0, "quality_high_prob": 1.0, "toxicity": 0.0}  # fmt: skip
    preset = get_preset("general").model_copy(update={"language": FINEWEB_ENGLISH})
    assert failed_reasons(row, {"prose": [], "code": []}, 5000.0, preset, None) == [
        "language", "perplexity"]  # fmt: skip
    code = {**row, "rule_set": "code", "language": "python", "language_score": None}
    assert failed_reasons(code, {"prose": [], "code": []}, 5000.0, preset, None) == []


def test_quality_scored_writes_language_and_drops_by_it(
    lm_storage: Storage, reference_lm: ReferenceLM, shared_data: Path
) -> None:
    english = halves(web_texts(shared_data))[1][:6]
    foreign = [PARAGRAPHS[k] * 3 for k in ("fr", "de", "ru")]
    docs = write_docs(lm_storage, "in_lang", "web", english + foreign)
    config = QualityConfig(language_filter=FINEWEB_ENGLISH)
    manifest = score_quality(lm_storage, docs, "web", reference_lm, config)
    scored = [r for s in manifest.extra["scored_shards"]
              for r in lm_storage.read_table(s["path"]).to_pylist()]  # fmt: skip
    by_id = {r["id"]: r for r in scored}
    assert [by_id[f"web/{i}"]["language"] for i in range(6, 9)] == ["fr", "de", "ru"]
    assert all(by_id[f"web/{i}"]["language"] == "en" for i in range(6))
    assert all(0.0 <= r["language_score"] <= 1.0 for r in scored)
    drops = [d for _, t in iter_shard_tables(lm_storage, manifest.drops) for d in t.to_pylist()]
    by_language = {d["id"] for d in drops if d["reason"] == "language"}
    assert by_language == {"web/6", "web/7", "web/8"}
    assert all(d["stage"] == "quality_scored" for d in drops)
    assert manifest.counts["in"] == manifest.rows + manifest.dropped == 9
    assert manifest.extra["keep_rate_per_reason"]["language"] == pytest.approx(6 / 9)
    assert manifest.extra["language_counts"] == {"en": 6, "fr": 1, "de": 1, "ru": 1}
    any_language = score_quality(lm_storage, docs, "web", reference_lm, QualityConfig())
    assert any_language.extra["scores_reused"] is True
    assert "language" not in any_language.extra["drops_per_first_reason"]
