"""The SFT data build: planted contamination, dedup, split, balanced counts on real data."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from llmstack_dagster.core.chat.sft_build import SFTBuildConfig, build_conversations
from llmstack_dagster.core.chat.sources import SFTSourceConfig, shared_sft_sources

SMALL = SFTBuildConfig(eval_sets=("gsm8k_test", "harmbench"))


def _balanced(counts: Counter[str]) -> bool:
    parts = ("quarantined", "contaminated", "duplicate", "train", "val")
    return counts["read"] == sum(counts[k] for k in parts)


def _source(tmp_path: Path, rows: list[object]) -> SFTSourceConfig:
    path = tmp_path / "mine.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return SFTSourceConfig(
        name="mine", kind="jsonl", paths=[str(path)], mapping="prompt_completion"
    )


def test_planted_gsm8k_question_is_dropped_and_counted(tmp_path: Path, shared_data: Path) -> None:
    question = json.loads((shared_data / "eval/gsm8k/test.jsonl").open().readline())["question"]
    rows = [
        {"prompt": "Say hi.", "completion": "Hi!"},
        {"prompt": f"Solve this: {question}", "completion": "18"},
        {"prompt": "Say hi.", "completion": "Hi!"},
        "{broken",
        {"prompt": "Name a colour.", "completion": "Blue."},
    ]
    build = build_conversations([_source(tmp_path, rows)], shared_data, SMALL)
    counts = build.counts["mine"]
    assert counts["contaminated:gsm8k_test"] == 1 and counts["duplicate"] == 1
    assert counts["quarantined:malformed_json"] == 1 and _balanced(counts)
    reasons = {d["id"]: (d["reason"], d["detail"]) for d in build.drops}
    assert reasons["mine/2"][0] == "contaminated" and "gsm8k_test" in reasons["mine/2"][1]
    assert reasons["mine/3"] == ("duplicate", "duplicate of mine/1")
    assert build.quarantine[0]["locator"].endswith("mine.jsonl#line:4")
    assert len(build.kept) == 2


def test_split_is_deterministic_with_a_val_example_per_source(shared_data: Path) -> None:
    sources = [s.model_copy(update={"max_examples": 30}) for s in shared_sft_sources(shared_data)]
    first = build_conversations(sources, shared_data, SMALL)
    again = build_conversations(sources, shared_data, SMALL)
    splits = [(k.split, k.conversation.id) for k in first.kept]
    assert splits == [(k.split, k.conversation.id) for k in again.kept]
    for name, counts in first.counts.items():
        assert counts["val"] >= 1, name
        assert _balanced(counts)
    other = build_conversations(sources, shared_data, SMALL.model_copy(update={"seed": 7}))
    assert splits != [(k.split, k.conversation.id) for k in other.kept]


@pytest.mark.slow
def test_full_shared_build_balances(shared_data: Path) -> None:
    build = build_conversations(shared_sft_sources(shared_data), shared_data)
    assert set(build.counts) == {"t0", "self_instruct", "gsm8k_train"}
    for counts in build.counts.values():
        assert _balanced(counts)
    total = sum(c["read"] for c in build.counts.values())
    assert total == len(build.kept) + len(build.drops) + len(build.quarantine)
    assert build.counts["gsm8k_train"]["contaminated:gsm8k_test"] > 0
    assert build.counts["self_instruct"]["read"] == 175
    ids = [k.conversation.id for k in build.kept]
    assert len(ids) == len(set(ids))
    val = sum(k.split == "val" for k in build.kept) / len(build.kept)
    assert 0.04 < val < 0.06
