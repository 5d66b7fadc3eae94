"""Runs that start from weights: a checkpoint of this stack or a Hugging Face import, with the
optimizer state loaded or fresh; and a corrupt checkpoint that a resume falls back from."""

from __future__ import annotations

import json
from pathlib import Path

from support.hf_models import write_hf_model
from support.training import run_entrypoint, tiny_config, write_config

from llmstack_dagster.core.training.checkpoint import checkpoint_dir
from llmstack_dagster.core.training.engine import SUMMARY_FILE
from llmstack_dagster.core.training.hf_import import import_hf
from llmstack_dagster.core.training.metrics import read_metrics

EVAL = {"every": 0, "batches": 1, "max_new_tokens": 2, "prompts": ["The"]}


def run(cfg, tmp_path: Path, name: str):
    return run_entrypoint(write_config(cfg, tmp_path / f"{name}.json"))


def evals(out: Path) -> list[dict]:
    return [r for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "eval"]


def train_losses(out: Path) -> list[float]:
    return [r["train/loss"] for r in read_metrics(out / "metrics.jsonl") if "train/loss" in r]


def test_a_run_from_a_checkpoint_starts_where_the_checkpoint_ended(token_data, tmp_path) -> None:
    base = tiny_config(token_data, tmp_path / "base", max_steps=4, eval=EVAL)
    run(base, tmp_path, "base")
    final = checkpoint_dir(tmp_path / "base", 4)
    fresh_opt = tiny_config(token_data, tmp_path / "fresh", max_steps=2, eval=EVAL,
                            init={"path": str(final)})  # fmt: skip
    run(fresh_opt, tmp_path, "fresh")
    start = evals(tmp_path / "fresh")[0]
    assert start["step"] == 0  # a run from weights always measures its starting point
    assert start["val/loss"] == evals(tmp_path / "base")[-1]["val/loss"]
    summary = json.loads((tmp_path / "fresh" / SUMMARY_FILE).read_text())
    assert summary["resume"]["resumed"] is False
    assert "with a fresh optimizer" in summary["resume"]["detail"]

    kept = fresh_opt.model_copy(
        update={
            "out_dir": str(tmp_path / "kept"),
            "init": {"path": str(final), "load_optimizer": True},
        }  # fmt: skip
    )
    run(kept, tmp_path, "kept")
    assert (
        "with its optimizer state"
        in json.loads((tmp_path / "kept" / SUMMARY_FILE).read_text())["resume"]["detail"]
    )
    assert train_losses(tmp_path / "kept")[1] != train_losses(tmp_path / "fresh")[1]


def test_a_run_from_an_hf_import_exports_with_its_tokenizer(
    token_data, tokenizer_file, tmp_path
) -> None:
    write_hf_model(tmp_path / "hf", tokenizer_file, max_position_embeddings=64)
    imported = import_hf(tmp_path / "hf", tmp_path / "imported")
    cfg = tiny_config(token_data, tmp_path / "out", max_steps=2, eval=EVAL, export_hf=True,
                      init={"path": str(imported.path)})  # fmt: skip
    run(cfg, tmp_path, "run")
    assert evals(tmp_path / "out")[0]["step"] == 0
    exported = json.loads((tmp_path / "out" / "hf" / "tokenizer_config.json").read_text())
    assert exported["chat_template"] == imported.chat_template
    config = json.loads((tmp_path / "out" / "hf" / "config.json").read_text())
    assert config["hidden_size"] == imported.config.d_model == 64


def test_a_corrupt_checkpoint_falls_back_to_the_previous_one(token_data, tmp_path) -> None:
    cfg = tiny_config(token_data, tmp_path / "run", max_steps=4, checkpoint_every=2, eval=EVAL)
    run(cfg, tmp_path, "run")
    expected = train_losses(tmp_path / "run")
    weights = checkpoint_dir(tmp_path / "run", 4) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated, yet marked COMPLETE
    leftover = tmp_path / "run" / "checkpoints" / ".tmp-step_00000006-dead"
    leftover.mkdir()  # a kill during a checkpoint write
    result = run(cfg, tmp_path, "run")
    assert "model.safetensors" in result.stderr and "falling back to step_00000002" in result.stderr
    assert "at step 2" in result.stderr
    assert not leftover.exists()
    assert train_losses(tmp_path / "run") == expected  # steps 3 and 4 again, bit for bit
