"""The one command line that starts training, locally or in a Modal container."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENTRYPOINT_MODULE = "llmstack_dagster.core.training.entrypoint"
# Variables that must not leak from a parent process into a fresh training launch.
LAUNCH_ENV_DROP = ("DAGSTER_PIPES_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_", "TORCHELASTIC_")


def training_command(config_file: Path | str, nproc: int = 1) -> list[str]:
    """``python -m <entrypoint> --config run.json``, through torchrun when ``nproc`` > 1."""
    args = ["-m", ENTRYPOINT_MODULE, "--config", str(config_file)]
    if nproc > 1:
        launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
        return [sys.executable, *launcher, *args]
    return [sys.executable, *args]


def launch_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without Pipes/torchrun variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(LAUNCH_ENV_DROP)}
    env["PYTHONUNBUFFERED"] = "1"
    return env | (extra or {})
