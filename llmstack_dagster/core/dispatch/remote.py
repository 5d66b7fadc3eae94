"""The code that runs inside the Modal container.

It runs the same entrypoint as the local resource (``command.training_command``, torchrun
for several GPUs) on the volume, where the trainer resumes from the latest complete
checkpoint by itself. Meanwhile it commits the volume every ``commit_every_s`` seconds and
whenever a new complete checkpoint appears, so a preempted or timed-out call loses at most
the steps since that checkpoint, and it streams events to a ``modal.Queue`` partition that
the Dagster resource polls: ``{"kind": "log", "message": ...}`` for every output line and
``{"kind": "metric", "record": {...}}`` for every new ``metrics.jsonl`` record.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import modal
from pydantic import BaseModel, Field

from llmstack_dagster.core.dispatch.command import launch_env, training_command
from llmstack_dagster.core.training.checkpoint import (
    latest_complete_checkpoint,
    read_checkpoint_meta,
)
from llmstack_dagster.core.training.config import TrainConfig

VOLUME_MOUNT = "/vol"
RUN_CONFIG = "run.json"
Emit = Callable[[list[dict[str, Any]]], None]


class RemoteRequest(BaseModel):
    """One training call; paths are relative to the volume root."""

    config: dict[str, Any]
    data_rel: str
    run_rel: str
    init_rel: str | None = None  # the initial weights folder, when the run starts from one
    volume_name: str
    queue_name: str
    partition: str
    nproc: int = Field(default=1, ge=1)
    mount: str = VOLUME_MOUNT
    commit_every_s: float = Field(default=300.0, gt=0)
    poll_s: float = Field(default=1.0, gt=0)


class SyncedVolume(Protocol):
    def reload(self) -> None: ...
    def commit(self) -> None: ...


class MetricsTail:
    """New complete lines of a growing JSONL file, from where it ended at creation."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.is_file() else 0

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        return [json.loads(line) for line in complete.splitlines() if line.strip()]


def _pump_lines(stream: Any, sink: queue.Queue[str]) -> None:
    for line in iter(stream.readline, ""):
        sink.put(line.rstrip("\n"))
    stream.close()


def _drain(lines: queue.Queue[str]) -> list[str]:
    out = []
    while True:
        try:
            out.append(lines.get_nowait())
        except queue.Empty:
            return out


def write_run_config(req: RemoteRequest) -> Path:
    """The TrainConfig with the volume's data and run folders, as ``run.json`` in the run."""
    mount = Path(req.mount)
    run_dir = mount / req.run_rel
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig.model_validate(
        req.config | {"data_dir": str(mount / req.data_rel), "out_dir": str(run_dir)}
    )
    if req.init_rel is not None and cfg.init is not None:
        cfg.init.path = str(mount / req.init_rel)
    path = run_dir / RUN_CONFIG
    path.write_text(cfg.model_dump_json(indent=2))
    return path


def run_remote(req: RemoteRequest, volume: SyncedVolume, emit: Emit) -> dict[str, Any]:
    """Train (resuming) on the mounted volume; returns the final step and checkpoint path."""
    volume.reload()
    run_dir = Path(req.mount) / req.run_rel
    resume = latest_complete_checkpoint(run_dir)
    start = f"resuming from {resume.name}" if resume else "no complete checkpoint, starting fresh"
    emit([{"kind": "log", "message": f"modal: {start}"}])
    config_file = write_run_config(req)
    tail = MetricsTail(run_dir / "metrics.jsonl")
    cmd = training_command(config_file, req.nproc)
    proc = subprocess.Popen(
        cmd,
        env=launch_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_pump_lines, args=(proc.stdout, lines), daemon=True)
    reader.start()
    last_commit, committed = time.monotonic(), resume
    while True:
        finished = proc.poll() is not None
        if finished:
            reader.join()
        events = [{"kind": "log", "message": line} for line in _drain(lines)]
        events += [{"kind": "metric", "record": r} for r in tail.read()]
        if events:
            emit(events)
        newest = latest_complete_checkpoint(run_dir)
        if finished or newest != committed or time.monotonic() - last_commit > req.commit_every_s:
            volume.commit()
            last_commit, committed = time.monotonic(), newest
        if finished:
            break
        time.sleep(req.poll_s)
    if proc.returncode != 0:
        raise RuntimeError(f"training exited with {proc.returncode}: {' '.join(cmd)}")
    final = latest_complete_checkpoint(run_dir)
    step = read_checkpoint_meta(final).step if final else None
    return {"step": step, "checkpoint": str(final.relative_to(req.mount)) if final else None}


def train_remote(request: dict[str, Any]) -> dict[str, Any]:
    """The Modal function body: look up the volume and the event queue, then train."""
    req = RemoteRequest.model_validate(request)
    volume = modal.Volume.from_name(req.volume_name)
    events = modal.Queue.from_name(req.queue_name, create_if_missing=True)

    def emit(batch: list[dict[str, Any]]) -> None:
        events.put_many(batch, partition=req.partition)

    return run_remote(req, volume, emit)
