"""The engine keeps pretraining's behaviour: the smoke profile's pretraining config, run on the
sample token shards, gives the same loss at every step (to float32 rounding) as the loop did
before the engine was generalized (``golden/smoke_losses.json``, recorded with the loop of
commit ddaa43f).

The golden file holds each loss as ``float.hex``; a change in any of them is a behaviour change
of the loop (seeding, batching, schedule, accumulation or clipping), not noise: on CPU in one
thread the run is deterministic. So that other machines compute the same bits, the run pins
the instruction set of every kernel library to AVX2: PyTorch's own kernels
(``ATEN_CPU_CAPABILITY``), oneDNN (``ONEDNN_MAX_CPU_ISA``) and MKL through its conditional
numerical reproducibility mode (``MKL_CBWR=AVX2``). That gives the recorded bits on the Intel
machines the file was recorded on; on an AMD EPYC the same pinned run differs in the last float32
bit of some losses (largest relative difference measured: 1.8e-7). So each loss must match within
``REL_TOL`` = 1e-6, a few float32 ulps: any change to the loop moves the losses by 1e-3 or more.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from support.training import run_entrypoint, write_config

from llmstack_dagster.core.training.config import TrainConfig
from llmstack_dagster.core.training.metrics import read_metrics
from llmstack_dagster.profiles import SMOKE

GOLDEN = Path(__file__).parent / "golden" / "smoke_losses.json"
REPRODUCIBLE_KERNELS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AVX2",
}
REL_TOL = 1e-6


def smoke_train_config(data_dir: Path, out_dir: Path) -> TrainConfig:
    """The smoke profile's ``pretrained_checkpoint`` settings as a TrainConfig."""
    s = SMOKE["pretrained_checkpoint"]
    return TrainConfig.model_validate(
        {
            "data_dir": str(data_dir),
            "out_dir": str(out_dir),
            "preset": s["preset"],
            "seq_len": s["seq_len"],
            "micro_batch_size": s["micro_batch_size"],
            "grad_accum_steps": 2,  # accumulation is part of what must not change
            "max_steps": s["max_steps"],
            "checkpoint_every": s["checkpoint_every"],
            "log_every": 1,
            "cpu_threads": 1,
            "optim": {"lr": s["lr"], "warmup_steps": s["warmup_steps"]},
            "eval": {"every": s["eval_every"], "batches": 2, "max_new_tokens": 4},
            "export_hf": False,
        }
    )


def losses(out_dir: Path) -> dict[str, list[str]]:
    records = read_metrics(out_dir / "metrics.jsonl")
    return {
        "train": [float(r["train/loss"]).hex() for r in records if "train/loss" in r],
        "val": [float(r["val/loss"]).hex() for r in records if "val/loss" in r],
    }


def test_smoke_loss_sequence_is_unchanged(token_data: Path, tmp_path: Path) -> None:
    cfg = smoke_train_config(token_data, tmp_path / "run")
    run_entrypoint(write_config(cfg, tmp_path / "run.json"), env=REPRODUCIBLE_KERNELS)
    got = losses(tmp_path / "run")
    if os.environ.get("LLMSTACK_RECORD_GOLDEN"):
        GOLDEN.write_text(json.dumps(got, indent=1) + "\n")
        pytest.skip("golden losses recorded")
    golden = json.loads(GOLDEN.read_text())
    assert {k: len(v) for k, v in got.items()} == {k: len(v) for k, v in golden.items()}
    for kind, values in golden.items():
        for step, (ours, recorded) in enumerate(zip(got[kind], values, strict=True)):
            a, b = float.fromhex(ours), float.fromhex(recorded)
            assert math.isclose(a, b, rel_tol=REL_TOL), f"{kind} loss #{step}: {a!r} != {b!r}"
