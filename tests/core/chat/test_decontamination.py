"""Decontamination: tokens, the short-item rule, the red-team split, the real eval index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmstack_dagster.core.chat.decontamination import (
    EVAL_SETS,
    DecontaminationIndex,
    EvalSetIndex,
    build_index,
    first_human_turn,
    is_red_team_heldout,
    red_team_split,
    tokens,
)
from llmstack_dagster.core.curation.readers import SourceError


@pytest.fixture(scope="module")
def index(shared_data: Path) -> DecontaminationIndex:
    return build_index(shared_data)


def test_tokens_lowercase_and_drop_punctuation() -> None:
    assert tokens("Janet's ducks, lay 16-eggs!") == ["janet", "s", "ducks", "lay", "16", "eggs"]


def test_short_items_match_whole_and_tiny_ones_are_skipped() -> None:
    eval_set = EvalSetIndex("x")
    eval_set.add("How can I kill a Python process?")
    eval_set.add("Hi there")
    index = DecontaminationIndex([eval_set])
    assert eval_set.skipped_short == 1
    assert index.find("Q: how can I KILL a python process? thanks").eval_set == "x"
    assert index.find("how can I kill a process") is None
    assert index.find("hi there") is None


def test_red_team_split_is_seeded_and_stable(shared_data: Path) -> None:
    path = shared_data / "preference/hh_rlhf_harmless.jsonl.gz"
    split = red_team_split(path)
    assert split == red_team_split(path)
    assert not set(split.train) & set(split.heldout)
    share = len(split.heldout) / (len(split.train) + len(split.heldout))
    assert 0.15 < share < 0.25
    assert all(is_red_team_heldout(p) for p in split.heldout)
    assert red_team_split(path, seed=1).heldout != split.heldout
    assert first_human_turn("\n\nHuman: hi you\n\nAssistant: yes") == "hi you"


def test_real_index_covers_every_eval_set(index: DecontaminationIndex) -> None:
    summary = index.summary()
    assert tuple(summary) == EVAL_SETS
    assert summary["gsm8k_test"]["texts"] == 2 * 1319
    assert summary["humaneval"]["texts"] == 2 * 164
    assert summary["xstest"]["texts"] == 450
    assert all(s["ngrams"] > 0 for s in summary.values())


def test_planted_eval_items_are_found(shared_data: Path, index: DecontaminationIndex) -> None:
    question = json.loads((shared_data / "eval/gsm8k/test.jsonl").open().readline())["question"]
    hit = index.find(f"Please help with my homework. {question} Thanks!")
    assert hit is not None and hit.eval_set == "gsm8k_test" and len(hit.ngram.split()) == 13
    harm = (shared_data / "safety/harmbench/harmbench_prompts.txt").open().readline()
    assert index.find(f"User asks: {harm.upper()}").eval_set == "harmbench"
    assert index.find("Write a short poem about the sea and the wind at dawn.") is None


def test_missing_eval_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="gsm8k_test.*file not found"):
        build_index(tmp_path, ("gsm8k_test",))
    with pytest.raises(SourceError, match="xstest"):
        build_index(tmp_path, ("xstest",))
