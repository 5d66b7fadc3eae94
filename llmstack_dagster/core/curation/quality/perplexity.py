"""CCNet document perplexity under the reference KenLM model (Wenzek et al. 2020, section 3.3).

Per normalized line: s = log10 P(line with <s> and </s>), l = SentencePiece tokens + 1;
PP = 10 ** (-sum(s) / sum(l)). Buckets: head below the 30th, middle below the 60th percentile.
"""

from __future__ import annotations

import kenlm
import sentencepiece as spm

from llmstack_dagster.core.curation.quality.normalize import normalized_lines

BUCKETS = ("head", "middle", "tail")


class PerplexityModel:
    """A KenLM binary plus the SentencePiece model its training text was tokenized with."""

    def __init__(self, kenlm_path: str, sp_path: str) -> None:
        self.lm = kenlm.Model(kenlm_path)
        self.sp = spm.SentencePieceProcessor(model_file=sp_path)

    def tokenize(self, normalized_line: str) -> list[str]:
        return self.sp.encode(normalized_line, out_type=str)

    def log10_score(self, text: str) -> tuple[float, int]:
        """(sum of line log10 scores, sum of tokens + 1 per line) over the normalized lines."""
        total, length = 0.0, 0
        for line in normalized_lines(text):
            pieces = self.tokenize(line)
            total += self.lm.score(" ".join(pieces), bos=True, eos=True)
            length += len(pieces) + 1
        return total, length

    def perplexity(self, text: str) -> float | None:
        """Document perplexity; None when no line survives normalization."""
        total, length = self.log10_score(text)
        return 10.0 ** (-total / length) if length else None


def ccnet_bucket(perplexity: float | None, cutoffs: tuple[float, float]) -> str | None:
    """head / middle / tail for the (30th, 60th) percentile cutoffs."""
    if perplexity is None:
        return None
    if perplexity < cutoffs[0]:
        return "head"
    return "middle" if perplexity < cutoffs[1] else "tail"
