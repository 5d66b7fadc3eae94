"""Typed configuration of the dedup stage, with the defaults of Parmar et al. (2024)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator


class DedupConfig(BaseModel):
    """Exact + MinHash-LSH fuzzy dedup settings.

    Defaults (Parmar et al. 2024, "Data, Data Everywhere"): word 5-gram shingles over lowercased,
    punctuation-stripped words; 112 permutations as 14 bands x 8 rows, so the LSH S-curve
    midpoint is about (1/14)^(1/8) = 0.72; candidates kept when their estimated Jaccard is at
    least 0.8. :meth:`nemo_curator` gives NeMo Curator's character 24-grams with 20 x 13.
    """

    shingle: Literal["word", "char"] = "word"
    ngram: int = Field(5, ge=1)
    num_bands: int = Field(14, ge=1)
    rows_per_band: int = Field(8, ge=1)
    threshold: float = Field(0.8, gt=0.0, le=1.0)
    seed: int = 42
    batch_docs: int = Field(4096, ge=1)
    bucket_all_pairs_max: int = Field(
        32, ge=2, description="buckets up to this size verify every pair; larger ones a chain"
    )
    max_shard_rows: int = Field(200_000, ge=1)
    sample_clusters: int = Field(10, ge=0)

    @property
    def num_perm(self) -> int:
        return self.num_bands * self.rows_per_band

    @property
    def lsh_threshold(self) -> float:
        """Jaccard at which a pair becomes a candidate with probability about 1/2."""
        return (1.0 / self.num_bands) ** (1.0 / self.rows_per_band)

    @model_validator(mode="after")
    def _signature_fits(self) -> DedupConfig:
        if self.num_perm > 4096:
            raise ValueError("num_bands * rows_per_band must be at most 4096")
        return self

    @classmethod
    def nemo_curator(cls, **overrides: object) -> DedupConfig:
        """NeMo Curator's fuzzy-dedup setting: character 24-grams, 20 bands x 13 rows."""
        values: dict[str, object] = {
            "shingle": "char", "ngram": 24, "num_bands": 20, "rows_per_band": 13,
        }
        values.update(overrides)
        return cls.model_validate(values)

    def signature_params(self) -> dict[str, object]:
        """The settings that must match for two fingerprint sets to be comparable."""
        return {
            "shingle": self.shingle,
            "ngram": self.ngram,
            "num_bands": self.num_bands,
            "rows_per_band": self.rows_per_band,
            "seed": self.seed,
        }
