"""The optional lm-evaluation-harness wiring, with fake ``lm_eval`` executables first on PATH."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from llmstack_dagster.core.evaluation.lm_eval import lm_eval_command, run_lm_eval

WRITES_RESULTS = """
import json, os, sys
args = sys.argv[1:]
out = args[args.index("--output_path") + 1]
tasks = args[args.index("--tasks") + 1].split(",")
folder = os.path.join(out, "model__hf")
os.makedirs(folder, exist_ok=True)
results = {t: {"alias": t, "acc,none": 0.25, "acc_stderr,none": "N/A", "n": 4} for t in tasks}
with open(os.path.join(folder, "results_2025-01-01T00-00-00.json"), "w") as handle:
    json.dump({"results": results, "argv": args}, handle)
with open(os.path.join(out, "env.json"), "w") as handle:
    json.dump({k: os.environ.get(k) for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")}, handle)
print("|Tasks|Metric|Value|")
"""
OFFLINE_DATA = """
import sys
print("Loading task arc_easy ...")
print("datasets.exceptions.ConnectionError: Couldn't reach 'allenai/ai2_arc' on the Hub "
      "(LocalEntryNotFoundError)", file=sys.stderr)
sys.exit(1)
"""
OTHER_FAILURE = """
import sys
print("RuntimeError: the model config has no vocab_size", file=sys.stderr)
sys.exit(2)
"""


@pytest.fixture
def fake_lm_eval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str | None], Path]:
    """Install a fake ``lm_eval`` with the given body first on PATH (none beside python)."""
    interpreter = sys.executable
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-venv" / "python"))

    def install(body: str | None) -> Path:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        if body is not None:
            script = bin_dir / "lm_eval"
            script.write_text(f"#!{interpreter}\n{body}")
            script.chmod(0o755)
        monkeypatch.setenv("PATH", str(bin_dir) if body is None else f"{bin_dir}:/usr/bin:/bin")
        return bin_dir

    return install


def test_command_line() -> None:
    command = lm_eval_command(Path("/m/hf"), ["arc_easy", "hellaswag"], Path("/o"), 10, 4, "cpu")
    assert command == [
        "lm_eval", "--model", "hf", "--model_args", "pretrained=/m/hf",
        "--tasks", "arc_easy,hellaswag", "--output_path", "/o", "--limit", "10",
        "--batch_size", "4", "--device", "cpu",
    ]
    assert "--limit" not in lm_eval_command(Path("/m"), ["a"], Path("/o"), None, 8, "cuda")


def test_no_tasks_is_skipped(tmp_path: Path) -> None:
    outcome = run_lm_eval(tmp_path, [], tmp_path / "out")
    assert outcome.status == "skipped"
    assert outcome.message == "no lm-eval tasks configured"


def test_not_installed_is_skipped_with_how_to_install(tmp_path: Path, fake_lm_eval) -> None:
    fake_lm_eval(None)
    outcome = run_lm_eval(tmp_path, ["arc_easy"], tmp_path / "out")
    assert outcome.status == "skipped"
    assert "pip install lm-eval" in outcome.message


def test_results_are_read_from_the_newest_results_json(tmp_path: Path, fake_lm_eval) -> None:
    fake_lm_eval(WRITES_RESULTS)
    out = tmp_path / "out"
    outcome = run_lm_eval(tmp_path / "hf", ["arc_easy", "piqa"], out, limit=5, batch_size=2)
    assert outcome.status == "ran", outcome.message
    assert outcome.results == {
        "arc_easy": {"acc,none": 0.25, "n": 4.0},
        "piqa": {"acc,none": 0.25, "n": 4.0},
    }
    assert json.loads((out / "env.json").read_text()) == {
        "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
    }


def test_the_callers_offline_settings_win(
    tmp_path: Path, fake_lm_eval, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_lm_eval(WRITES_RESULTS)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    out = tmp_path / "out"
    assert run_lm_eval(tmp_path / "hf", ["arc_easy"], out).status == "ran"
    assert json.loads((out / "env.json").read_text())["HF_DATASETS_OFFLINE"] == "0"


def test_missing_task_data_offline_is_skipped(tmp_path: Path, fake_lm_eval) -> None:
    fake_lm_eval(OFFLINE_DATA)
    outcome = run_lm_eval(tmp_path / "hf", ["arc_easy", "piqa"], tmp_path / "out")
    assert outcome.status == "skipped"
    assert "arc_easy" in outcome.message and "piqa" not in outcome.message
    assert "local HF datasets cache" in outcome.message


def test_other_failures_are_failed_with_the_output(tmp_path: Path, fake_lm_eval) -> None:
    fake_lm_eval(OTHER_FAILURE)
    outcome = run_lm_eval(tmp_path / "hf", ["arc_easy"], tmp_path / "out")
    assert outcome.status == "failed"
    assert "no vocab_size" in outcome.message
    assert outcome.results == {}


def test_a_run_past_the_timeout_is_failed(tmp_path: Path, fake_lm_eval) -> None:
    fake_lm_eval("import time\ntime.sleep(60)\n")
    outcome = run_lm_eval(tmp_path / "hf", ["arc_easy"], tmp_path / "out", timeout_s=1.0)
    assert outcome.status == "failed"
    assert "timed out" in outcome.message

