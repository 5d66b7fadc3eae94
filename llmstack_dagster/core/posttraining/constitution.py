"""The constitution of constitutional AI (Bai et al. 2022): principles written as requests.

The YAML file (``llmstack_dagster/constitution/constitution.yaml`` by default) holds
``critique_revision`` pairs for the supervised phase (a critique request and the matching
revision request), ``comparison`` principles for the AI-feedback phase (a question asking which
of two replies is better under that principle), and few-shot examples of both. Every principle
has a unique id; :func:`constitution_hash` fingerprints the parsed content, so a change to any
principle (not to a comment) makes everything built from it stale.

Principles are sampled per prompt with a generator seeded by ``(seed, prompt id)``: the same
prompt always gets the same principles, whichever other prompts are in the run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_CONSTITUTION = Path(__file__).resolve().parents[2] / "constitution" / "constitution.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CritiqueRevision(_Strict):
    id: str = Field(min_length=1)
    critique: str = Field(min_length=1)
    revision: str = Field(min_length=1)


class ComparisonPrinciple(_Strict):
    id: str = Field(min_length=1)
    text: str = Field(min_length=1)


class CritiqueExample(_Strict):
    prompt: str
    answer: str
    critique: str
    revision: str


class ComparisonExample(_Strict):
    prompt: str
    response_a: str
    response_b: str
    answer: str = Field(pattern="^[AB]$")


class FewShot(_Strict):
    critique_revision: list[CritiqueExample] = []
    comparison: list[ComparisonExample] = []


class Constitution(_Strict):
    version: int
    name: str
    critique_revision: list[CritiqueRevision] = Field(min_length=1)
    comparison: list[ComparisonPrinciple] = Field(min_length=1)
    few_shot: FewShot = FewShot()

    @model_validator(mode="after")
    def _unique_ids(self) -> Constitution:
        ids = [p.id for p in self.critique_revision] + [p.id for p in self.comparison]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"principle ids must be unique; repeated: {duplicates}")
        return self

    def principle(self, principle_id: str) -> CritiqueRevision:
        return next(p for p in self.critique_revision if p.id == principle_id)


def load_constitution(path: Path = DEFAULT_CONSTITUTION) -> Constitution:
    """Parse and validate a constitution file (a clear error naming the file otherwise)."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        return Constitution.model_validate(raw)
    except (yaml.YAMLError, ValueError) as err:
        raise ValueError(f"constitution {path} is invalid: {err}") from err


def constitution_hash(constitution: Constitution) -> str:
    """SHA-256 of the canonical JSON of the parsed constitution."""
    canonical = json.dumps(constitution.model_dump(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _rng(seed: int, key: str) -> np.random.Generator:
    digest = hashlib.sha256(key.encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def sample_ids(ids: list[str], count: int, seed: int, key: str) -> list[str]:
    """``count`` ids drawn for ``key`` (a prompt id) with a generator seeded by ``(seed, key)``:
    distinct while ``count`` allows it, then drawn again (an ensemble larger than the list)."""
    rng = _rng(seed, key)
    picks: list[str] = []
    while len(picks) < count:
        take = min(count - len(picks), len(ids))
        picks += [ids[i] for i in rng.permutation(len(ids))[:take]]
    return picks
