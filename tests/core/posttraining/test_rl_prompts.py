"""The RL prompt set: sources, splits, drops and the reward files a run carries."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.checkpoints import SMALL, write_checkpoint

from llmstack_dagster.core.evaluation import eval_sets
from llmstack_dagster.core.posttraining.rl_prompts import (
    MATH_INSTRUCTION,
    RLPromptSetConfig,
    attach_reward_files,
    build_rl_prompts,
    load_rl_index,
    read_rl_prompts,
    shared_rl_prompts,
    split_of,
)
from llmstack_dagster.core.storage import ShardManifest, Storage, read_manifest, write_version
from llmstack_dagster.core.training.init_weights import load_model


def build(root: Path, shared_data: Path, tokenizer_file: Path, **cfg) -> tuple[Path, dict]:  # noqa: ANN003
    store = Storage(str(root))
    config = RLPromptSetConfig(gsm8k=12, red_team=10, safe=8, val_fraction=0.25, **cfg)
    with write_version(store, "rl_prompts", None, "v") as version:
        _, shards, drops, counts = build_rl_prompts(
            store, version, shared_rl_prompts(shared_data, config), tokenizer_file, config
        )
        version.commit(
            ShardManifest(asset="rl_prompts", partition=None, shards=shards, drops=drops)
        )
    manifest = read_manifest(store, "rl_prompts", None)
    return Path(store.local_path(manifest.folder)), counts


def test_prompt_set_reads_train_sources_only_and_splits_by_id(
    shared_data, tokenizer_file, tmp_path
):  # noqa: ANN001, ANN201
    folder, counts = build(tmp_path, shared_data, tokenizer_file)
    assert {k: v["read"] for k, v in counts.items()} == {"gsm8k": 12, "red_team": 10, "safe": 8}
    index = load_rl_index(folder)
    train, train_ids = read_rl_prompts(folder, index, "train")
    val, _ = read_rl_prompts(folder, index, "val")
    assert len(train) + len(val) == 30 and val
    assert all(split_of(p.id, 0.25, 0) == "train" for p in train)
    assert all(split_of(p.id, 0.25, 0) == "val" for p in val)
    test_questions = {p.question for p in eval_sets.gsm8k_problems(shared_data, "test")}
    heldout_red_team = set(eval_sets.red_team_split(shared_data / eval_sets.RED_TEAM_PATH).heldout)
    for prompt in train + val:
        text = prompt.turns[-1].content
        if prompt.source == "gsm8k":
            assert prompt.answer and text.endswith(MATH_INSTRUCTION)
            assert text.removesuffix(MATH_INSTRUCTION) not in test_questions
        else:
            assert prompt.kind == {"red_team": "harmful", "safe": "safe"}[prompt.source]
            assert text not in heldout_red_team
    assert all(len(ids) <= index.max_prompt_len for ids in train_ids)


def test_prompts_too_long_are_dropped_with_a_reason(shared_data, tokenizer_file, tmp_path) -> None:  # noqa: ANN001
    folder, counts = build(tmp_path, shared_data, tokenizer_file, max_prompt_len=40)
    too_long = sum(c["too_long"] for c in counts.values())
    assert too_long > 0
    assert sum(c["read"] for c in counts.values()) == too_long + sum(
        c["train"] + c["val"] for c in counts.values()
    )
    store = Storage(str(tmp_path))
    manifest = read_manifest(store, "rl_prompts", None)
    assert manifest.dropped == too_long
    reasons = {
        r for s in manifest.drops for r in store.read_table(s.path).column("reason").to_pylist()
    }
    assert reasons == {"too_long"}


def test_reward_files_travel_with_the_prompts_and_change_the_data_version(
    shared_data,
    tokenizer_file,
    tmp_path,  # noqa: ANN001
) -> None:
    folder, _ = build(tmp_path, shared_data, tokenizer_file)
    before = load_rl_index(folder).data_version
    model, checkpoint = write_checkpoint(tmp_path / "rm", SMALL)
    index = attach_reward_files(folder, checkpoint, b"classifier")
    assert index.data_version != before and load_rl_index(folder) == index
    copied = load_model(folder / index.reward_model)
    assert all(
        (a == b).all()
        for a, b in zip(copied.state_dict().values(), model.state_dict().values(), strict=True)
    )
    assert (folder / index.refusal_classifier).read_bytes() == b"classifier"
    with pytest.raises(FileNotFoundError):
        attach_reward_files(folder, tmp_path / "nowhere", None)
