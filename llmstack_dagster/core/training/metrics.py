"""Model FLOPs utilization and the run's metric sinks (JSONL, TensorBoard, a callback).

MFU = tokens/s · FLOPs/token / (n_gpus · peak bf16 dense FLOP/s), with FLOPs/token from
``core.models.config.flops_per_token`` (PaLM, App. B). Peaks are vendor datasheet dense
(no sparsity) bf16 tensor-core figures; T4 and V100 lack bf16, so their fp16 peak is used.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

# Ordered: the first key contained in the device name wins ("H100 PCIe" before "H100").
GPU_PEAK_FLOPS: dict[str, float] = {
    "B200": 2.25e15,
    "H200": 989.4e12,
    "H100 PCIe": 756.0e12,
    "H100 NVL": 835.0e12,
    "H100": 989.4e12,
    "GH200": 989.4e12,
    "A100": 312.0e12,
    "L40S": 362.05e12,
    "L4": 121.0e12,
    "A10G": 70.0e12,
    "A10": 125.0e12,
    "RTX 4090": 165.2e12,
    "RTX 3090": 71.0e12,
    "V100": 125.0e12,
    "T4": 65.0e12,
}

MetricCallback = Callable[[int, dict[str, float]], None]


def peak_flops(device_name: str) -> float | None:
    """Dense bf16 peak FLOP/s for a GPU name such as ``NVIDIA H100 80GB HBM3``."""
    for key, peak in GPU_PEAK_FLOPS.items():
        if key.lower() in device_name.lower():
            return peak
    return None


def detect_peak_flops(device: torch.device) -> float | None:
    """Peak of the current CUDA device; None on CPU or an unknown GPU."""
    if device.type != "cuda":
        return None
    return peak_flops(torch.cuda.get_device_name(device))


def mfu(tokens_per_s: float, flops_per_token: float, peak: float, n_devices: int = 1) -> float:
    """Model FLOPs utilization in [0, 1]."""
    return tokens_per_s * flops_per_token / (peak * n_devices)


class MetricsLogger:
    """Writes each record to ``metrics.jsonl`` and TensorBoard and forwards it to callbacks.

    Only rank 0 should create one. The JSONL file is appended to (resumed runs continue it)
    and flushed per line, so a remote poller can tail it.
    """

    def __init__(self, out_dir: Path, callbacks: list[MetricCallback] | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        out_dir.mkdir(parents=True, exist_ok=True)
        self.path = out_dir / "metrics.jsonl"
        drop_partial_last_line(self.path)
        self._file = open(self.path, "a")  # noqa: SIM115 - closed in close()
        self._tb = SummaryWriter(log_dir=str(out_dir / "tensorboard"))
        self.callbacks = callbacks or []

    def log(self, step: int, values: dict[str, float], kind: str) -> None:
        """One record; ``kind`` (train, eval) tells records of the same step apart."""
        record = {"step": step, "kind": kind, "time": time.time(), **values}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        for name, value in values.items():
            self._tb.add_scalar(name, value, step)
        for callback in self.callbacks:
            callback(step, values)

    def close(self) -> None:
        self._tb.close()
        self._file.close()


def drop_partial_last_line(path: Path) -> None:
    """Cut a last line that has no newline: a record a killed run was writing, which the
    resumed run's first record would otherwise be glued to."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Records of a ``metrics.jsonl``; for re-run steps (after a resume) the last one wins."""
    by_key: dict[tuple[int, str], dict[str, Any]] = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            by_key[(record["step"], record.get("kind", ""))] = record
    return sorted(by_key.values(), key=lambda r: (r["step"], r.get("kind", "")))
