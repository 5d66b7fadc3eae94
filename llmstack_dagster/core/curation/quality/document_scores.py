"""Per-document scores: input checks, heuristic metrics, perplexity and attributes."""

from __future__ import annotations

from dataclasses import dataclass, field

from llmstack_dagster.core.curation.quality import code_rules, gopher, heuristics
from llmstack_dagster.core.curation.quality.attributes.domain_classifier import DomainPredictor
from llmstack_dagster.core.curation.quality.attributes.embeddings import EmbeddingConfig
from llmstack_dagster.core.curation.quality.attributes.features import DocumentFeatures
from llmstack_dagster.core.curation.quality.attributes.quality_classifier import QualityPredictor
from llmstack_dagster.core.curation.quality.attributes.toxicity import ToxicityScorer
from llmstack_dagster.core.curation.quality.language import LanguageIdentifier
from llmstack_dagster.core.curation.quality.perplexity import PerplexityModel, ccnet_bucket
from llmstack_dagster.core.curation.quality.words import gopher_words

METRIC_FIELDS = (
    *heuristics.METRICS,
    *gopher.QUALITY_METRICS,
    *gopher.REPETITION_METRICS,
    *code_rules.METRICS,
)
ATTRIBUTE_FIELDS = (
    "language_score",
    "perplexity",
    "ccnet_bucket",
    "quality_label",
    "quality_high_prob",
    "toxicity",
    "domain_label",
    "domain_prob",
)
_BINARY_MAX_FRACTION = 0.05
INPUT_ISSUES = ("empty", "too_long", "binary")


@dataclass
class Scorers:
    perplexity: PerplexityModel
    bucket_cutoffs: tuple[float, float]
    quality: QualityPredictor
    toxicity: ToxicityScorer
    domain: DomainPredictor
    code_marker_lines: int
    max_chars: int
    language: LanguageIdentifier | None = None  # prose only; writes language, language_score
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)


def input_issue(text: str, max_chars: int) -> str | None:
    """'empty', 'too_long' or 'binary' for input that is not scored at all, else None."""
    if not text or text.isspace():
        return "empty"
    if len(text) > max_chars:
        return "too_long"
    if _binary_chars(text) / len(text) > _BINARY_MAX_FRACTION:
        return "binary"
    return None


def _binary_chars(text: str) -> int:
    """Replacement characters (undecodable bytes) plus non-printing characters other than
    newlines and tabs; the character-by-character count runs only when some are present."""
    bad = text.count("\ufffd")
    if text.replace("\n", " ").replace("\t", " ").replace("\r", " ").isprintable():
        return bad
    return bad + sum(1 for c in text if not c.isprintable() and c not in "\n\t\r")


def _metrics(text: str, is_code: bool, marker_lines: int) -> dict[str, float | None]:
    if is_code:
        return code_rules.code_metrics(text, marker_lines)
    words = gopher_words(text)
    return {
        **heuristics.heuristic_metrics(text),
        **gopher.quality_metrics(text, words),
        **gopher.repetition_metrics(text, words),
    }


def score_texts(texts: list[str], is_code: bool, scorers: Scorers) -> list[dict]:
    """Score columns for each text (None where a text was not scored)."""
    rows: list[dict] = []
    valid: list[int] = []
    for i, text in enumerate(texts):
        issue = input_issue(text, scorers.max_chars)
        row: dict = dict.fromkeys(METRIC_FIELDS + ATTRIBUTE_FIELDS)
        row["input_issue"] = issue
        row["rule_set"] = "code" if is_code else "prose"
        if issue is None:
            valid.append(i)
            row.update(_metrics(text, is_code, scorers.code_marker_lines))
            row["perplexity"] = scorers.perplexity.perplexity(text)
            row["ccnet_bucket"] = ccnet_bucket(row["perplexity"], scorers.bucket_cutoffs)
        rows.append(row)
    if valid:
        batch = [texts[i] for i in valid]
        if scorers.language is not None and not is_code:
            for i, language, score in zip(valid, *scorers.language(batch), strict=True):
                rows[i].update(language=language, language_score=score)
        features = DocumentFeatures(batch, scorers.embedding)  # shared by the attributes
        labels, high = scorers.quality(features)
        toxicity = scorers.toxicity(batch)
        domains, domain_prob = scorers.domain(features)
        for k, i in enumerate(valid):
            rows[i].update(
                quality_label=labels[k],
                quality_high_prob=float(high[k]),
                toxicity=float(toxicity[k]),
                domain_label=domains[k],
                domain_prob=float(domain_prob[k]),
            )
    return rows
