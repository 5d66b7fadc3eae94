"""Training-step throughput: our Llama vs Hugging Face ``LlamaForCausalLM``, and GPU MFU.

CPU mode (default without CUDA): the same config, weights, batch, AdamW and fp32 for both
models; steps alternate between the two so machine load affects both alike; the median
step time gives tokens/s. ``--compile`` compiles our model only (HF stays eager). Each run
updates its row, keyed by model/threads/compile, in ``bench/results/train-cpu.json`` and
``train-cpu.md`` together with the exact command.

    .venv/bin/python bench/train.py --mode cpu [--threads 2] [--compile] [--cpu-model tiny]
        [--task pretrain|continued]

``--task continued`` is the continued-pretraining step: a random HF ``LlamaForCausalLM`` is
imported into our model through the HF import's weight mapping (as ``base_model`` does), and
our step goes through the engine's next-token objective; HF trains its own weights.

GPU mode (default with CUDA): d12 in bf16 autocast with ``torch.compile`` and fused AdamW
at sequence 1024 and 2048, tokens/s and MFU against the detected GPU's bf16 peak.

    .venv/bin/python bench/train.py --mode gpu [--preset d12] [--batch 16]
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from llmstack_dagster.core.models.config import ModelConfig, flops_per_token, model_config
from llmstack_dagster.core.models.llama import LlamaLM
from llmstack_dagster.core.training.config import OptimConfig
from llmstack_dagster.core.training.hf_export import hf_config, hf_state_dict
from llmstack_dagster.core.training.hf_import import hf_to_state_dict
from llmstack_dagster.core.training.metrics import detect_peak_flops, mfu
from llmstack_dagster.core.training.objectives import NextToken
from llmstack_dagster.core.training.optim import build_optimizer

RESULTS = Path(__file__).resolve().parent / "results"
CPU_MODELS = {
    "small": dict(
        vocab_size=8192,
        d_model=256,
        n_layers=4,
        n_heads=8,
        n_kv_heads=4,
        ffn_hidden=704,
        max_seq_len=256,
    ),
    "tiny": model_config("tiny").model_dump(),  # the demo model
}


def hf_twin(model: LlamaLM) -> torch.nn.Module:
    """A ``LlamaForCausalLM`` with our config and our weights."""
    from transformers import LlamaForCausalLM

    config = hf_config(model.cfg)
    config._attn_implementation = "sdpa"
    hf = LlamaForCausalLM(config)
    hf.load_state_dict(hf_state_dict(model.state_dict(), model.cfg), strict=False)
    if model.cfg.tie_embeddings:
        hf.tie_weights()
    return hf


def imported_twin(cfg: ModelConfig) -> tuple[LlamaLM, torch.nn.Module]:
    """A random HF model and ours initialized from it by the import's weight mapping."""
    from transformers import LlamaForCausalLM

    config = hf_config(cfg)
    config._attn_implementation = "sdpa"
    hf = LlamaForCausalLM(config)
    ours = LlamaLM(cfg)
    ours.load_state_dict(hf_to_state_dict(hf.state_dict(), cfg))
    return ours, hf


def make_step(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    model: torch.nn.Module,
    device: torch.device,
    autocast: torch.dtype | None,
) -> Callable[[torch.Tensor, torch.Tensor], float]:
    optimizer = build_optimizer(model, OptimConfig(), device)

    def step(x: torch.Tensor, y: torch.Tensor) -> float:
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            loss = loss_fn(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return step


def bench_cpu(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    cfg = ModelConfig(**CPU_MODELS[args.cpu_model])
    torch.manual_seed(0)
    if args.task == "continued":
        ours, hf = imported_twin(cfg)
    else:
        ours = LlamaLM(cfg)
        hf = hf_twin(ours)
    forward = torch.compile(ours) if args.compile else ours
    cpu = torch.device("cpu")

    def ours_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if args.task == "continued":  # the engine's objective, one micro-batch per step
            return NextToken().loss(forward, {"input_ids": x, "targets": y}, 1)[0]
        return forward(x, y)

    def hf_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = hf(input_ids=x).logits
        return F.cross_entropy(logits.float().flatten(0, 1), y.flatten())

    steps = {"ours": make_step(ours_loss, ours, cpu, None), "hf": make_step(hf_loss, hf, cpu, None)}
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, cfg.vocab_size, (args.batch, args.seq + 1), generator=gen)
    x, y = tokens[:, :-1], tokens[:, 1:]
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(args.warmup + args.steps):
        for name, step in steps.items():
            elapsed = step(x, y)
            if i >= args.warmup:
                times[name].append(elapsed)
    per_step = {name: statistics.median(t) for name, t in times.items()}
    result = {name: args.batch * args.seq / t for name, t in per_step.items()}
    return {
        "mode": "cpu",
        "command": shlex.join([".venv/bin/python", "bench/train.py", *sys.argv[1:]]),
        "torch": torch.__version__,
        "threads": args.threads,
        "compile": args.compile,
        "model": args.cpu_model,
        "task": args.task,
        "batch": args.batch,
        "seq": args.seq,
        "steps": args.steps,
        "step_ms": {name: 1e3 * t for name, t in per_step.items()},
        "tokens_per_s": result,
        "speedup": result["ours"] / result["hf"],
    }


def merge_result(path: Path, key: str, row: dict) -> dict:
    """Put ``row`` under ``key`` in the JSON file of result rows; returns every row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = json.loads(path.read_text()) if path.exists() else {}
    rows[key] = row
    path.write_text(json.dumps(rows, indent=2, sort_keys=True) + "\n")
    return rows


def write_cpu_results(row: dict, out: Path) -> None:
    """Merge ``row`` into ``train-cpu.json`` (keyed by config) and rewrite ``train-cpu.md``."""
    task = "" if row.get("task", "pretrain") == "pretrain" else f"-{row['task']}"
    key = f"{row['model']}{task}-t{row['threads']}-{'compiled' if row['compile'] else 'eager'}"
    rows = merge_result(out / "train-cpu.json", key, row)
    lines = [
        "CPU training step, ours vs HF `LlamaForCausalLM` (same config, weights, batch, AdamW,"
        " fp32; steps alternate; medians). `compiled` compiles ours only.",
        "",
        "| config | batch x seq | ours tok/s | HF tok/s | speedup | command |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in sorted(rows.items()):
        tps = r["tokens_per_s"]
        lines.append(
            f"| {name} | {r['batch']} x {r['seq']} | {tps['ours']:.0f} | {tps['hf']:.0f}"
            f" | {r['speedup']:.2f}x | `{r['command']}` |"
        )
    (out / "train-cpu.md").write_text("\n".join(lines) + "\n")


def bench_gpu(args: argparse.Namespace) -> list[dict]:
    device = torch.device("cuda")
    peak = detect_peak_flops(device)
    rows = []
    for seq in args.seqs:
        cfg = model_config(args.preset, max_seq_len=seq)
        torch.manual_seed(0)
        model = LlamaLM(cfg).to(device)
        forward = torch.compile(model) if args.compile else model
        step = make_step(forward, model, device, torch.bfloat16)
        tokens = torch.randint(0, cfg.vocab_size, (args.batch, seq + 1), device=device)
        x, y = tokens[:, :-1], tokens[:, 1:]
        times = [step(x, y) for _ in range(args.warmup + args.steps)][args.warmup :]
        tokens_per_s = args.batch * seq / statistics.median(times)
        row = {
            "mode": "gpu",
            "device": torch.cuda.get_device_name(),
            "preset": args.preset,
            "seq": seq,
            "batch": args.batch,
            "compile": args.compile,
            "tokens_per_s": tokens_per_s,
            "mfu": mfu(tokens_per_s, flops_per_token(cfg, seq), peak) if peak else None,
            "max_mem_gib": torch.cuda.max_memory_allocated() / 2**30,
        }
        rows.append(row)
        del model, forward, step
        torch.cuda.empty_cache()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mode", choices=["cpu", "gpu"], default="gpu" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--seq", type=int, default=256, help="CPU mode sequence length")
    parser.add_argument("--seqs", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--preset", default="d12", help="GPU mode model preset")
    parser.add_argument("--cpu-model", choices=sorted(CPU_MODELS), default="small")
    parser.add_argument("--task", choices=["pretrain", "continued"], default="pretrain")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS, help="CPU mode results folder")
    args = parser.parse_args()
    if args.mode == "cpu":
        args.compile = bool(args.compile)
        args.batch = args.batch or 4
        row = bench_cpu(args)
        write_cpu_results(row, args.out)
        print(json.dumps(row, indent=2))
        print(f"command: {row['command']}")
    else:
        args.compile = True if args.compile is None else args.compile
        args.batch = args.batch or 16
        print(json.dumps(bench_gpu(args), indent=2))


if __name__ == "__main__":
    main()
