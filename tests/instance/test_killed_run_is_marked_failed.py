"""End to end: a run whose code server and worker are SIGKILLed is marked failed by the daemon.

With Dagster's plain ``DefaultRunLauncher`` such a run stays ``STARTED`` forever (checked by
hand: still STARTED a minute later); the project's launcher reports the dead worker to run
monitoring. The daemon, its code server and the run are real processes on this machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SLEEPY = """
import os, time
from dagster import Definitions, asset, define_asset_job

@asset
def sleepy() -> None:
    with open(os.environ["PID_FILE"], "w") as handle:
        handle.write(str(os.getpid()))
    time.sleep(600)

defs = Definitions(assets=[sleepy], jobs=[define_asset_job("sleepy_job", ["sleepy"])])
"""


def _wait(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out after {seconds:.0f} s waiting for {what}")


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_run_with_a_dead_code_server_is_marked_failed(tmp_path: Path, monkeypatch) -> None:
    config = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    config["run_monitoring"]["poll_interval_seconds"] = 1
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "sleepy.py").write_text(SLEEPY)
    workspace = tmp_path / "workspace.yaml"
    load = {"load_from": [{"python_file": str(tmp_path / "sleepy.py")}]}
    workspace.write_text(yaml.safe_dump(load))
    pid_file = tmp_path / "pid"
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "PID_FILE": str(pid_file)}
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    DagsterInstance.get().dispose()  # create the storage once, before two processes race to
    log = open(tmp_path / "daemon.log", "w")  # noqa: SIM115 (closed with the daemon)
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)],
        env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        launched = subprocess.run(
            [str(BIN / "dagster"), "job", "launch", "-f", str(tmp_path / "sleepy.py"),
             "-j", "sleepy_job"],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert launched.returncode == 0, launched.stdout + launched.stderr
        step = int(_wait(lambda: pid_file.exists() and pid_file.read_text(), 120, "the step"))
        run_worker = _parent(step)
        code_server = _parent(run_worker)
        for pid in (code_server, run_worker, step):
            os.kill(pid, signal.SIGKILL)
        with DagsterInstance.get() as instance:

            def finished() -> DagsterRunStatus | None:
                status = instance.get_runs(limit=1)[0].status
                return None if status == DagsterRunStatus.STARTED else status

            status = _wait(finished, 90, "run monitoring to mark the run")
        assert status == DagsterRunStatus.FAILURE
    finally:
        os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait()
        log.close()
