"""CCNet document perplexity under the reference KenLM model (Wenzek et al. 2020, section 3.3).

Per scored segment: s = log10 P(segment with <s> and </s>), l = SentencePiece tokens + 1;
PP = 10 ** (-sum(s) / sum(l)), rounded to one decimal as CCNet's ``DocLM`` rounds it.
Segments: ``document`` (default, CCNet as released) normalizes the whole document into one line,
its newlines removed; ``line`` scores every non-empty normalized line. Buckets: head below the
30th, middle below the 60th percentile. Details and measured differences:
``references/ccnet-perplexity.md``.
"""

from __future__ import annotations

from typing import Literal

import kenlm
import sentencepiece as spm

from llmstack_dagster.core.curation.quality.normalize import normalize_document, normalized_lines

BUCKETS = ("head", "middle", "tail")
ScoringMode = Literal["document", "line"]
PERPLEXITY_DECIMALS = 1  # cc_net/perplexity.py: round(pp(doc_log_score, doc_length), 1)


def scored_segments(text: str, scoring: ScoringMode) -> list[str]:
    """The normalized segments KenLM scores: the whole document as one line, or each line."""
    if scoring == "line":
        return normalized_lines(text)
    document = normalize_document(text)
    return [document] if document else []


class PerplexityModel:
    """A KenLM binary plus the SentencePiece model its training text was tokenized with."""

    def __init__(self, kenlm_path: str, sp_path: str, scoring: ScoringMode = "document") -> None:
        self.lm = kenlm.Model(kenlm_path)
        self.sp = spm.SentencePieceProcessor(model_file=sp_path)
        self.scoring = scoring

    def tokenize(self, normalized_line: str) -> list[str]:
        return self.sp.encode(normalized_line, out_type=str)

    def log10_score(self, text: str) -> tuple[float, int]:
        """(sum of segment log10 scores, sum of tokens + 1 per segment)."""
        total, length = 0.0, 0
        for segment in scored_segments(text, self.scoring):
            pieces = self.tokenize(segment)
            total += self.lm.score(" ".join(pieces), bos=True, eos=True)
            length += len(pieces) + 1
        return total, length

    def perplexity(self, text: str) -> float | None:
        """Document perplexity; None when nothing survives normalization."""
        total, length = self.log10_score(text)
        return round(10.0 ** (-total / length), PERPLEXITY_DECIMALS) if length else None


def ccnet_bucket(perplexity: float | None, cutoffs: tuple[float, float]) -> str | None:
    """head / middle / tail for the (30th, 60th) percentile cutoffs."""
    if perplexity is None:
        return None
    if perplexity < cutoffs[0]:
        return "head"
    return "middle" if perplexity < cutoffs[1] else "tail"
