"""The default run launcher, with the worker health check that run monitoring needs.

Dagster's ``DefaultRunLauncher`` starts each run in a subprocess of the code server, but
cannot tell the run-monitoring daemon whether that process is still alive, so a run whose
worker was killed (SIGKILL, out of memory) stays ``STARTED`` forever. This launcher asks the
run's code server (its address is in the run's tags) which runs it is executing: a started
run it does not know any more has lost its worker, and the daemon marks it failed.
"""

from __future__ import annotations

from dagster import DefaultRunLauncher
from dagster._core.errors import DagsterUserCodeUnreachableError
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun
from dagster._grpc.types import GetCurrentRunsResult
from dagster._serdes import deserialize_value


class MonitoredRunLauncher(DefaultRunLauncher):
    """``DefaultRunLauncher`` + ``check_run_worker_health`` through the code server."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        client = self._get_grpc_client_for_termination(run.run_id)
        if client is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "no code server recorded for run")
        try:
            current = deserialize_value(client.get_current_runs(), GetCurrentRunsResult)
        except DagsterUserCodeUnreachableError as err:
            # the code server is gone, and its run subprocesses with it
            return CheckRunHealthResult(WorkerStatus.FAILED, f"code server unreachable: {err}")
        if run.run_id in current.current_runs:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(
            WorkerStatus.FAILED, "the code server no longer runs it: its process died"
        )
