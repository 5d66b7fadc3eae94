"""The in-container runner: resume choice, run config, events, commits, failures."""

import json
from pathlib import Path

import pytest

from llmstack_dagster.core.dispatch.download import wanted
from llmstack_dagster.core.dispatch.remote import (
    MetricsTail,
    RemoteRequest,
    run_remote,
    write_run_config,
)


class RecordingVolume:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def reload(self) -> None:
        self.calls.append("reload")

    def commit(self) -> None:
        self.calls.append("commit")


def request(mount: Path, **overrides) -> RemoteRequest:
    base = dict(
        config={"data_dir": "ignored", "out_dir": "ignored", "max_steps": 5},
        data_rel="data/abc",
        run_rel="runs/r1",
        volume_name="v",
        queue_name="q",
        partition="p",
        mount=str(mount),
        poll_s=0.05,
    )
    return RemoteRequest.model_validate(base | overrides)


def test_run_config_points_at_the_volume(tmp_path: Path) -> None:
    path = write_run_config(request(tmp_path))
    cfg = json.loads(path.read_text())
    assert cfg["data_dir"] == str(tmp_path / "data/abc")
    assert cfg["out_dir"] == str(tmp_path / "runs/r1")
    assert cfg["max_steps"] == 5
    assert cfg["init"] is None


def test_initial_weights_point_at_their_volume_copy(tmp_path: Path) -> None:
    config = {"data_dir": "x", "out_dir": "x", "init": {"path": "/local/weights"}}
    path = write_run_config(request(tmp_path, config=config, init_rel="init/0123"))
    assert json.loads(path.read_text())["init"]["path"] == str(tmp_path / "init/0123")


def test_resumes_from_latest_complete_checkpoint_and_reports_failure(tmp_path: Path) -> None:
    ckpts = tmp_path / "runs/r1/checkpoints"
    (ckpts / "step_00000004").mkdir(parents=True)
    (ckpts / "step_00000004" / "COMPLETE").write_text('{"step": 4}')
    (ckpts / "step_00000008").mkdir()  # a preempted write: no COMPLETE marker
    events: list[dict] = []
    volume = RecordingVolume()
    # No token shards in the volume: the real entrypoint starts, fails, and its output streams.
    with pytest.raises(RuntimeError, match="training exited with"):
        run_remote(request(tmp_path), volume, events.extend)
    assert events[0] == {"kind": "log", "message": "modal: resuming from step_00000004"}
    assert any("index.json" in e.get("message", "") for e in events[1:])
    assert volume.calls[0] == "reload" and volume.calls[-1] == "commit"


def test_metrics_tail_yields_only_new_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n')
    tail = MetricsTail(path)
    assert tail.read() == []
    with open(path, "a") as handle:
        handle.write('{"step": 2}\n{"step": 3')
    assert tail.read() == [{"step": 2}]
    with open(path, "a") as handle:
        handle.write("}\n")
    assert tail.read() == [{"step": 3}]


def test_download_selects_the_final_checkpoint_only() -> None:
    assert wanted("checkpoints/step_00000008/model.safetensors", "step_00000008")
    assert not wanted("checkpoints/step_00000004/model.safetensors", "step_00000008")
    assert wanted("hf/config.json", None) and wanted("metrics.jsonl", None)
    assert not wanted("checkpoints/.tmp-step_00000012-ab/model.safetensors", "step_00000008")
