"""The training command line and its environment, local or remote."""

import sys

import pytest

from llmstack_dagster.core.dispatch.command import ENTRYPOINT_MODULE, launch_env, training_command


def test_single_process_runs_the_entrypoint_module() -> None:
    assert training_command("/vol/runs/r/run.json") == [
        sys.executable,
        "-m",
        ENTRYPOINT_MODULE,
        "--config",
        "/vol/runs/r/run.json",
    ]


def test_several_gpus_go_through_torchrun() -> None:
    cmd = training_command("run.json", nproc=8)
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc-per-node=8" in cmd and "--standalone" in cmd
    assert cmd[-4:] == ["-m", ENTRYPOINT_MODULE, "--config", "run.json"]


def test_launch_env_drops_pipes_and_rank_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_PIPES_CONTEXT", "x")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("MASTER_ADDR", "h")
    monkeypatch.setenv("HF_TOKEN", "kept")
    env = launch_env({"EXTRA": "1"})
    assert "DAGSTER_PIPES_CONTEXT" not in env and "RANK" not in env and "MASTER_ADDR" not in env
    assert env["HF_TOKEN"] == "kept" and env["EXTRA"] == "1" and env["PYTHONUNBUFFERED"] == "1"
