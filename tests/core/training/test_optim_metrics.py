import math

import pytest
import torch

from llmstack_dagster.core.models.config import ModelConfig
from llmstack_dagster.core.models.llama import LlamaLM
from llmstack_dagster.core.training.config import OptimConfig
from llmstack_dagster.core.training.metrics import mfu, peak_flops, read_metrics
from llmstack_dagster.core.training.optim import build_optimizer, lr_at


def test_warmup_then_cosine_to_min_lr() -> None:
    cfg = OptimConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, 110, cfg) == pytest.approx(0.1)
    assert lr_at(9, 110, cfg) == pytest.approx(1.0)
    assert lr_at(60, 110, cfg) == pytest.approx(0.55)  # halfway: mean of max and min
    assert lr_at(110, 110, cfg) == pytest.approx(0.1)
    assert lr_at(35, 110, cfg) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 4)))


def test_warmup_stable_decay_cools_down_over_the_last_fraction() -> None:
    cfg = OptimConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.0, schedule="wsd")
    lrs = [lr_at(step, 100, cfg) for step in range(100)]  # cooldown: the last 20 steps
    assert lrs[9] == 1.0 and lrs[10:80] == [1.0] * 70
    assert lrs[80] == pytest.approx(0.95) and lrs[89] == pytest.approx(0.5)
    assert lrs[99] == 0.0
    assert all(a > b for a, b in zip(lrs[79:], lrs[80:], strict=False))


def test_weight_decay_only_on_matrices() -> None:
    model = LlamaLM(
        ModelConfig(
            vocab_size=32,
            d_model=16,
            n_layers=1,
            n_heads=2,
            n_kv_heads=2,
            ffn_hidden=32,
            max_seq_len=8,
        )
    )
    opt = build_optimizer(model, OptimConfig(weight_decay=0.1), torch.device("cpu"))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and all(p.dim() == 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.dim() == 1 for p in no_decay["params"])
    assert decay["fused"] and no_decay["fused"]


def test_mfu_and_gpu_peaks() -> None:
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989.4e12
    assert peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops("Tesla T4") == 65e12
    assert peak_flops("NVIDIA L4") == 121e12
    assert peak_flops("Some CPU") is None
    assert mfu(1e5, 1e9, 1e15) == pytest.approx(0.1)
    assert mfu(1e5, 1e9, 1e15, n_devices=2) == pytest.approx(0.05)


def test_read_metrics_keeps_the_last_record_of_a_rerun_step(tmp_path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(
        '{"step": 1, "kind": "train", "train/loss": 3.0}\n'
        '{"step": 2, "kind": "train", "train/loss": 2.0}\n'
        '{"step": 2, "kind": "eval", "val/loss": 2.5}\n'
        '{"step": 2, "kind": "train", "train/loss": 1.5}\n'
    )
    records = read_metrics(path)
    assert [(r["step"], r["kind"]) for r in records] == [(1, "train"), (2, "eval"), (2, "train")]
    assert records[-1]["train/loss"] == 1.5


def test_a_record_cut_by_a_kill_is_dropped_when_the_run_resumes(tmp_path) -> None:
    from llmstack_dagster.core.training.metrics import MetricsLogger, read_metrics

    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "kind": "train", "x": 1}\n{"step": 2, "ki')
    logger = MetricsLogger(tmp_path)
    logger.log(2, {"x": 2.0}, kind="train")
    logger.close()
    assert [(r["step"], r["x"]) for r in read_metrics(tmp_path / "metrics.jsonl")] == [
        (1, 1),
        (2, 2.0),
    ]
