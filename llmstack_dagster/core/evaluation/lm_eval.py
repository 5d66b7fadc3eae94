"""Optional lm-evaluation-harness run on an HF export folder.

``lm_eval`` is not a dependency and its task data comes from the Hugging Face hub, so a run is
*skipped* (with the reason) when no task is configured, when the ``lm_eval`` command is not
installed, or when the task data is not in the local HF datasets cache (the run is offline
unless the caller's environment says otherwise). Any other failure is *failed*.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

OUTPUT_TAIL_CHARS = 4000
_OFFLINE_DATA_ERROR = re.compile(
    r"ConnectionError|Couldn't reach|couldn't reach|OfflineModeIsEnabled|offline mode"
    r"|LocalEntryNotFoundError|DatasetNotFoundError|Couldn't find a dataset"
    r"|not found in the local cache|HF_DATASETS_OFFLINE|Max retries exceeded"
    r"|Temporary failure in name resolution|Name or service not known",
)


@dataclass(frozen=True)
class LmEvalOutcome:
    """``results``: task -> metric (``"acc,none"``...) -> value, numeric values only."""

    status: Literal["ran", "skipped", "failed"]
    message: str
    results: dict[str, dict[str, float]] = field(default_factory=dict)


def lm_eval_command(
    hf_dir: Path, tasks: list[str], output_dir: Path, limit: int | None, batch_size: int,
    device: str,
) -> list[str]:
    """The ``lm_eval`` command line (argv[0] is ``lm_eval``)."""
    command = [
        "lm_eval", "--model", "hf", "--model_args", f"pretrained={hf_dir}",
        "--tasks", ",".join(tasks), "--output_path", str(output_dir),
    ]
    if limit is not None:
        command += ["--limit", str(limit)]
    return command + ["--batch_size", str(batch_size), "--device", device]


def find_lm_eval() -> str | None:
    """The ``lm_eval`` executable beside this interpreter, else on PATH; None if absent."""
    beside = Path(sys.executable).parent / "lm_eval"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("lm_eval")


def run_lm_eval(
    hf_dir: Path, tasks: list[str], output_dir: Path, limit: int | None = None,
    batch_size: int = 8, device: str = "cpu", timeout_s: float = 3600,
) -> LmEvalOutcome:
    """Run lm_eval on ``hf_dir`` and read the metrics it writes under ``output_dir``."""
    if not tasks:
        return LmEvalOutcome("skipped", "no lm-eval tasks configured")
    executable = find_lm_eval()
    if executable is None:
        return LmEvalOutcome(
            "skipped", "lm_eval is not installed (pip install lm-eval); lm-eval tasks skipped"
        )
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    command = lm_eval_command(hf_dir, tasks, output_dir, limit, batch_size, device)
    command[0] = executable
    env = dict(os.environ)
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    started = time.time()
    returncode, output = _run(command, env, output_dir / "lm_eval.log", timeout_s)
    tail = output[-OUTPUT_TAIL_CHARS:]
    if returncode is None:
        return LmEvalOutcome("failed", f"lm_eval timed out after {timeout_s:g} s\n{tail}")
    if returncode != 0:
        if _OFFLINE_DATA_ERROR.search(output):
            named = [task for task in tasks if task in output] or tasks
            return LmEvalOutcome(
                "skipped",
                f"lm-eval task data for {', '.join(named)} could not be loaded offline: the "
                "datasets must be in the local HF datasets cache (HF_DATASETS_CACHE); "
                f"last output: {_last_line(output)}",
            )
        return LmEvalOutcome("failed", f"lm_eval exited with {returncode}\n{tail}")
    results_file = _newest_results(output_dir, started)
    if results_file is None:
        return LmEvalOutcome("failed", f"lm_eval wrote no results*.json under {output_dir}")
    results = read_results(results_file)
    return LmEvalOutcome("ran", f"lm_eval results: {results_file}", results)


def read_results(path: Path) -> dict[str, dict[str, float]]:
    """The numeric metrics of a results JSON: ``{"results": {task: {metric: value}}}``."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    results: dict[str, dict[str, float]] = {}
    for task, metrics in (data.get("results") or {}).items():
        if isinstance(metrics, dict):
            results[task] = {
                name: float(value)
                for name, value in metrics.items()
                if isinstance(value, int | float) and not isinstance(value, bool)
                and math.isfinite(value)
            }
    return results


def _run(
    command: list[str], env: dict[str, str], log_path: Path, timeout_s: float
) -> tuple[int | None, str]:
    """Run with output to ``log_path``; kill the process group at the timeout (returncode None)."""
    with open(log_path, "w+b") as log:
        proc = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode: int | None = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            returncode = None
        log.seek(0)
        return returncode, log.read().decode("utf-8", "replace")


def _newest_results(output_dir: Path, since: float) -> Path | None:
    files = [p for p in output_dir.rglob("results*.json") if p.stat().st_mtime >= since - 1]
    return max(files, key=lambda p: p.stat().st_mtime, default=None)


def _last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
