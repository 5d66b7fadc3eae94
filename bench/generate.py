"""Batched generation throughput: the engine's KV-cache generation vs Hugging Face ``generate``.

The same model (ours, and a ``LlamaForCausalLM`` with the same weights through the HF export's
mapping), the same prompts (seeded token ids of mixed lengths, left-padded by both sides), the
same batch size, greedy decoding of exactly ``--new`` tokens (no stop id), fp32, KV caches on
both sides. Rounds alternate between the two so machine load affects both alike; the median
round gives new tokens/s. Greedy answers are compared token for token. Each run updates its
row, keyed by model/batch/threads, in ``bench/results/generate-cpu.json`` and ``.md``.

    .venv/bin/python bench/generate.py [--model tiny|small] [--batch 16] [--prompts 32]
        [--new 64] [--threads 1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from train import CPU_MODELS, RESULTS, hf_twin, merge_result

from llmstack_dagster.core.models.config import ModelConfig
from llmstack_dagster.core.models.generation import generate_batch
from llmstack_dagster.core.models.llama import LlamaLM


def make_prompts(count: int, vocab: int, seed: int) -> list[list[int]]:
    """``count`` prompts of 8 to 64 random ids (id 0 is left out: both sides pad with it)."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(8, 65, (count,), generator=gen).tolist()
    return [torch.randint(1, vocab, (n,), generator=gen).tolist() for n in lengths]


def hf_generate(hf: torch.nn.Module, prompts: list[list[int]], new: int, batch: int) -> list:
    """HF ``generate`` over the same batches as ours (sorted by length, left-padded)."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[list[int]] = [[] for _ in prompts]
    for start in range(0, len(order), batch):
        rows = order[start : start + batch]
        width = max(len(prompts[i]) for i in rows)
        ids = torch.tensor([[0] * (width - len(prompts[i])) + prompts[i] for i in rows])
        mask = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in rows])
        with torch.no_grad():
            gen = hf.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new,
                do_sample=False, use_cache=True, pad_token_id=0, eos_token_id=None,
            )  # fmt: skip
        for row, seq in zip(rows, gen[:, width:].tolist(), strict=True):
            out[row] = seq
    return out


def bench(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = ModelConfig.model_validate({**CPU_MODELS[args.model], "max_seq_len": 256})
    ours = LlamaLM(cfg).eval()
    hf = hf_twin(ours).eval()
    hf.generation_config.pad_token_id = 0
    prompts = make_prompts(args.prompts, cfg.vocab_size, seed=1)
    runs = {
        "ours": lambda: generate_batch(ours, prompts, args.new, batch_size=args.batch),
        "hf": lambda: hf_generate(hf, prompts, args.new, args.batch),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    answers: dict[str, list] = {}
    for _ in range(args.rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            answers[name] = run()
            times[name].append(time.perf_counter() - start)
    new_tokens = sum(len(a) for a in answers["ours"])
    assert new_tokens == args.prompts * args.new == sum(len(a) for a in answers["hf"])
    tps = {name: new_tokens / statistics.median(t) for name, t in times.items()}
    same = sum(a == b for a, b in zip(answers["ours"], answers["hf"], strict=True))
    return {
        "model": args.model,
        "params": sum(p.numel() for p in ours.parameters()),
        "prompts": args.prompts,
        "batch": args.batch,
        "new": args.new,
        "threads": args.threads,
        "tokens_per_s": tps,
        "speedup": tps["ours"] / tps["hf"],
        "identical_greedy_answers": f"{same}/{len(prompts)}",
        "command": shlex.join(["python", *sys.argv]),
    }


def write_results(row: dict, out: Path) -> None:
    key = f"{row['model']}-b{row['batch']}-t{row['threads']}"
    rows = merge_result(out / "generate-cpu.json", key, row)
    lines = [
        "CPU batched greedy generation, ours (KV cache) vs HF `generate` (same weights, prompts,"
        " batches, left padding, fp32; rounds alternate; medians).",
        "",
        "| config | prompts x new | ours tok/s | HF tok/s | speedup | same answers | command |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in sorted(rows.items()):
        tps = r["tokens_per_s"]
        lines.append(
            f"| {name} | {r['prompts']} x {r['new']} | {tps['ours']:.0f} | {tps['hf']:.0f}"
            f" | {r['speedup']:.2f}x | {r['identical_greedy_answers']} | `{r['command']}` |"
        )
    (out / "generate-cpu.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(CPU_MODELS), default="tiny")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    row = bench(args)
    write_results(row, args.out)
    print(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
