"""The run launcher's worker health check, and the instance config that enables monitoring."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dagster import DagsterInstance
from dagster._core.errors import DagsterUserCodeUnreachableError
from dagster._core.launcher.base import WorkerStatus
from dagster._grpc.types import GetCurrentRunsResult
from dagster._serdes import serialize_value

from llmstack_dagster.instance.run_launcher import MonitoredRunLauncher

REPO = Path(__file__).resolve().parents[2]


class _CodeServer:
    """What the launcher asks of a code server: which runs it is executing."""

    def __init__(self, runs: list[str] | None) -> None:
        self.runs = runs

    def get_current_runs(self) -> str:
        if self.runs is None:
            raise DagsterUserCodeUnreachableError("connection refused")
        result = GetCurrentRunsResult(current_runs=self.runs, serializable_error_info=None)
        return serialize_value(result)


class _Run:
    run_id = "run-1"


@pytest.mark.parametrize(
    ("runs", "status"),
    [(["run-1", "run-2"], WorkerStatus.RUNNING), (["run-2"], WorkerStatus.FAILED),
     (None, WorkerStatus.FAILED)],
)  # fmt: skip
def test_health_follows_the_code_server(monkeypatch, runs, status) -> None:
    launcher = MonitoredRunLauncher()
    monkeypatch.setattr(launcher, "_get_grpc_client_for_termination", lambda _: _CodeServer(runs))
    assert launcher.check_run_worker_health(_Run()).status is status


def test_unknown_without_a_recorded_code_server(monkeypatch) -> None:
    launcher = MonitoredRunLauncher()
    monkeypatch.setattr(launcher, "_get_grpc_client_for_termination", lambda _: None)
    assert launcher.check_run_worker_health(_Run()).status is WorkerStatus.UNKNOWN


def test_project_instance_config_enables_run_monitoring(tmp_path: Path, monkeypatch) -> None:
    shutil.copy(REPO / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with DagsterInstance.get() as instance:
        assert isinstance(instance.run_launcher, MonitoredRunLauncher)
        assert instance.run_monitoring_enabled
        assert instance.run_launcher.supports_check_run_worker_health
        assert instance.run_monitoring_max_resume_run_attempts == 0
