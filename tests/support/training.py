"""Small training configs and subprocess helpers shared by the training and resource tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from llmstack_dagster.core.training.config import TrainConfig

TINY_MODEL = {"d_model": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "ffn_hidden": 160}


def tiny_config(data_dir: Path, out_dir: Path, **overrides: Any) -> TrainConfig:
    base: dict[str, Any] = dict(
        data_dir=str(data_dir),
        out_dir=str(out_dir),
        model_overrides=TINY_MODEL,
        seq_len=32,
        micro_batch_size=4,
        max_steps=12,
        log_every=1,
        checkpoint_every=4,
        optim={"lr": 3e-3, "warmup_steps": 3},
        eval={"every": 0, "batches": 1, "max_new_tokens": 4, "prompts": ["The"]},
        export_hf=False,
        cpu_threads=1,
    )
    return TrainConfig.model_validate(base | overrides)


def write_config(cfg: TrainConfig, path: Path) -> Path:
    path.write_text(cfg.model_dump_json(indent=2))
    return path


def entrypoint_cmd(config_file: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "llmstack_dagster.core.training.entrypoint",
        "--config",
        str(config_file),
    ]


def clean_env() -> dict[str, str]:
    """The environment without Pipes or torchrun variables (tests may run under either)."""
    drop = ("DAGSTER_PIPES_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def run_entrypoint(
    config_file: Path, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        entrypoint_cmd(config_file),
        env=clean_env() | (env or {}),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )


def kill_after_first_checkpoint(config_file: Path, out_dir: Path, timeout: float = 240) -> None:
    """Start the entrypoint and SIGKILL it as soon as a complete checkpoint exists."""
    from llmstack_dagster.core.training.checkpoint import latest_complete_checkpoint

    proc = subprocess.Popen(
        entrypoint_cmd(config_file),
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while latest_complete_checkpoint(out_dir) is None and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"


def resource_train_config(**overrides: Any) -> dict:
    """:func:`tiny_config` for 4 steps as the dict a training resource is configured with.

    The resource sets the data and output folders; the placeholders only validate.
    """
    base = dict(max_steps=4, checkpoint_every=2, export_hf=True)
    return tiny_config(Path("unset"), Path("unset"), **(base | overrides)).model_dump()
