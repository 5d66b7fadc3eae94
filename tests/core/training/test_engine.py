"""Exact resume: a run SIGKILLed after a checkpoint and resumed matches an uninterrupted one."""

import json
from pathlib import Path

from support.training import kill_after_first_checkpoint, run_entrypoint, tiny_config, write_config

from llmstack_dagster.core.training.checkpoint import (
    complete_checkpoints,
    latest_complete_checkpoint,
    read_checkpoint_meta,
)
from llmstack_dagster.core.training.engine import SUMMARY_FILE
from llmstack_dagster.core.training.metrics import read_metrics

STEPS = 40


def train_losses(out_dir: Path) -> dict[int, float]:
    return {
        r["step"]: r["train/loss"]
        for r in read_metrics(out_dir / "metrics.jsonl")
        if "train/loss" in r
    }


def test_sigkill_then_resume_gives_identical_losses(token_data: Path, tmp_path: Path) -> None:
    straight = tiny_config(token_data, tmp_path / "straight", max_steps=STEPS, checkpoint_every=5)
    run_entrypoint(write_config(straight, tmp_path / "straight.json"))
    expected = train_losses(tmp_path / "straight")
    assert sorted(expected) == list(range(1, STEPS + 1))

    out = tmp_path / "killed"
    cfg_file = write_config(straight.model_copy(update={"out_dir": str(out)}), tmp_path / "k.json")
    kill_after_first_checkpoint(cfg_file, out)
    assert not (out / SUMMARY_FILE).exists(), "the run finished before it could be killed"
    resumed_from = read_checkpoint_meta(latest_complete_checkpoint(out)).step
    assert 5 <= resumed_from < STEPS

    result = run_entrypoint(cfg_file)
    assert f"at step {resumed_from}" in result.stderr
    assert train_losses(out) == expected  # bitwise equal floats, every step
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["step"] == STEPS
    assert len(complete_checkpoints(out)) == straight.keep_checkpoints
    meta = read_checkpoint_meta(latest_complete_checkpoint(out))
    assert meta.step == STEPS and meta.tokens_seen == STEPS * 4 * 32
    assert meta.mixture_hash and meta.tokenizer_hash and meta.code_version
    assert meta.date_min.month == 1 and meta.date_max.month == 3
    assert meta.train_config["max_steps"] == STEPS
