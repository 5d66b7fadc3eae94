"""The entrypoint as a plain subprocess and under Dagster Pipes."""

import json
from pathlib import Path

import dagster as dg
from support.training import entrypoint_cmd, run_entrypoint, tiny_config, write_config

from llmstack_dagster.core.training.engine import SUMMARY_FILE
from llmstack_dagster.core.training.metrics import read_metrics


def test_plain_subprocess_writes_metrics_tensorboard_and_export(token_data, tmp_path) -> None:
    cfg = tiny_config(
        token_data,
        tmp_path / "out",
        max_steps=6,
        log_every=2,
        export_hf=True,
        eval={"every": 3, "batches": 1, "max_new_tokens": 3, "prompts": ["a"]},
    )
    run_entrypoint(write_config(cfg, tmp_path / "run.json"))
    out = tmp_path / "out"
    records = read_metrics(out / "metrics.jsonl")
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [2, 4, 6]
    for key in ("train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s"):
        assert all(key in r for r in train)
    assert [r["step"] for r in records if r["kind"] == "eval"] == [0, 3, 6]
    assert any((out / "tensorboard").glob("events.out.tfevents.*"))
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert (Path(summary["hf_dir"]) / "config.json").is_file()
    assert summary["samples"][0]["prompt"] == "a"


def test_pipes_reports_live_metrics_and_materialization(token_data, tmp_path) -> None:
    cfg = tiny_config(token_data, tmp_path / "out", max_steps=4, log_every=1)
    config_file = write_config(cfg, tmp_path / "run.json")

    @dg.asset
    def pretrained(context: dg.AssetExecutionContext, pipes: dg.PipesSubprocessClient):
        invocation = pipes.run(command=entrypoint_cmd(config_file), context=context)
        messages = invocation.get_custom_messages()
        assert [m["step"] for m in messages if "train/loss" in m] == [1, 2, 3, 4]
        return invocation.get_materialize_result()

    result = dg.materialize([pretrained], resources={"pipes": dg.PipesSubprocessClient()})
    assert result.success
    materialization = result.asset_materializations_for_node("pretrained")[0]
    metadata = materialization.metadata
    assert metadata["step"].value == 4
    assert metadata["val_loss"].value > 0
    assert "| prompt |" in metadata["samples"].value
