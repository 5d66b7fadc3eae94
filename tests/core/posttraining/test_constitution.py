"""The constitution file: it loads, validates, hashes its content, and principles are sampled
per prompt with a seed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from llmstack_dagster.core.posttraining.constitution import (
    DEFAULT_CONSTITUTION,
    constitution_hash,
    load_constitution,
    sample_ids,
)


def test_the_project_constitution_has_both_phases_and_few_shot_examples() -> None:
    c = load_constitution()
    assert len(c.critique_revision) >= 16 and len(c.comparison) >= 16
    assert c.few_shot.critique_revision and c.few_shot.comparison
    assert c.principle("cr-harm").revision.startswith("Rewrite")


def test_hash_follows_content_not_comments(tmp_path: Path) -> None:
    text = DEFAULT_CONSTITUTION.read_text()
    commented = tmp_path / "commented.yaml"
    commented.write_text("# another comment\n" + text)
    assert constitution_hash(load_constitution(commented)) == constitution_hash(load_constitution())
    raw = yaml.safe_load(text)
    raw["comparison"][0]["text"] = "Which reply is kinder?"
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(raw))
    assert constitution_hash(load_constitution(changed)) != constitution_hash(load_constitution())


def test_invalid_constitutions_are_clear_errors(tmp_path: Path) -> None:
    raw = yaml.safe_load(DEFAULT_CONSTITUTION.read_text())
    raw["comparison"][1]["id"] = raw["critique_revision"][0]["id"]
    bad = tmp_path / "dup.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="repeated: \\['cr-harm'\\]"):
        load_constitution(bad)
    raw = yaml.safe_load(DEFAULT_CONSTITUTION.read_text())
    raw["critique_revision"][0]["critque"] = "typo"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="dup.yaml is invalid"):
        load_constitution(bad)


def test_principle_sampling_is_seeded_distinct_and_covers_the_constitution() -> None:
    ids = [p.id for p in load_constitution().critique_revision]
    first = [sample_ids(ids, 4, seed=0, key=f"p{i}") for i in range(200)]
    assert first == [sample_ids(ids, 4, seed=0, key=f"p{i}") for i in range(200)]
    assert first != [sample_ids(ids, 4, seed=1, key=f"p{i}") for i in range(200)]
    assert all(len(set(chain)) == 4 for chain in first)
    counts = Counter(pid for chain in first for pid in chain)
    assert set(counts) == set(ids)  # every principle is used
    assert max(counts.values()) < 3 * min(counts.values())  # roughly uniform: 50 each expected
    assert len(sample_ids(ids, 20, seed=0, key="p0")) == 20  # an ensemble larger than the list
