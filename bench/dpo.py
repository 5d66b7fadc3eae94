"""DPO step throughput: our step with the cached reference vs TRL's ``DPOTrainer``, on CPU.

Both sides train the same model config from the same initial weights on the same preference
pairs (Anthropic HH harmless, ``/work/shared/data/preference``: the shared prompt is the text up
to the last ``Assistant:``, the replies the rest plus ``<|eos|>``, tokenized by a 4096-token BPE
trained on the pairs), in the same order, with the same batch of pairs, steps, β, sigmoid loss,
constant lr, fused AdamW (betas 0.9/0.95, no weight decay), grad clip 1.0, fp32 and threads.
TRL gets the pairs already tokenized (``prompt_ids``, ``chosen_ids``, ``rejected_ids``; its
dataset preparation is skipped, so the token ids are ours) and a sequential sampler.

Ours: the reference log-probabilities of every pair are computed once before the timed steps
(``sequence_logprobs`` under ``no_grad``, from the initial weights, so no reference model is
kept); a step is one forward of the 2B rows ``prompt + chosen`` and ``prompt + rejected``
(``pair_rows``), ``preference_loss``, backward, clip, AdamW. TRL rows: ``DPOTrainer`` with the
reference model run at every step (``precompute_ref_log_probs=False``, its default), with
``precompute_ref_log_probs=True``, and with TRL 1.x's config default ``gradient_checkpointing=True``
(the other TRL rows turn it off, as ours does not recompute).

Each side runs in its own process (peak RSS is its own). Steps/s is one over the median step
time after the warmup steps; the loss of every step is recorded on both sides (step 0 is the
first batch before any update). The held-out loss is the DPO loss over separate pairs computed by
our model for every side (TRL's weights imported through ``hf_to_state_dict``), with the
reference log-probabilities of the initial weights. Results go to ``bench/results/dpo-cpu.json``
and ``.md``.

    .bench-venv/bin/python bench/dpo.py [--threads 1] [--steps 12] [--warmup 2]
"""

from __future__ import annotations

import argparse
import gzip
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from train import merge_result
from trl_side import bench_tokenizer, matched_trl_args, peak_rss_mb, step_timer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # our package, when .bench-venv lacks the editable install
RESULTS = ROOT / "bench" / "results"
CACHE = Path(tempfile.gettempdir()) / "llmstack-bench-dpo"  # outside the repo
HH = ROOT.parent / "shared" / "data" / "preference" / "hh_rlhf_harmless.jsonl.gz"
CUE = "\n\nAssistant:"
SIDES = ("ours", "trl", "trl-precompute", "trl-gc")


def model_cfg(seq_len: int):
    from llmstack_dagster.core.models.config import ModelConfig

    return ModelConfig(
        vocab_size=4096,
        d_model=256,
        n_layers=4,
        n_heads=8,
        n_kv_heads=4,
        ffn_hidden=704,
        max_seq_len=seq_len,
    )


def split_pair(row: dict) -> tuple[str, str, str] | None:
    """(prompt, chosen reply, rejected reply): the prompt ends with the last assistant cue."""
    cut = row["chosen"].rfind(CUE) + len(CUE)
    prompt = row["chosen"][:cut]
    if cut < len(CUE) or not row["rejected"].startswith(prompt):
        return None
    chosen, rejected = row["chosen"][cut:], row["rejected"][cut:]
    return (prompt, chosen, rejected) if chosen != rejected else None


def prepare(args) -> Path:
    """Tokenizer, tokenized pairs (train and held-out) and initial weights, in CACHE."""
    from llmstack_dagster.core.models.llama import LlamaLM
    from llmstack_dagster.core.training.tokenizer import (
        TokenizerConfig,
        load_tokenizer,
        save_tokenizer,
        special_token_ids,
        train_tokenizer,
    )

    CACHE.mkdir(parents=True, exist_ok=True)
    with gzip.open(HH, "rt") as f:
        rows = [json.loads(line) for line in f]
    tok_path = CACHE / "tok" / "tokenizer.json"
    if not tok_path.exists():
        texts = [t for r in rows for t in (r["chosen"], r["rejected"])]
        save_tokenizer(train_tokenizer(texts, TokenizerConfig(vocab_size=4096)), tok_path.parent)
    tok = load_tokenizer(tok_path)
    eos = special_token_ids(tok)["eos"]
    need = args.steps * args.batch + args.eval_pairs
    pairs = []
    for row in rows:
        split = split_pair(row)
        if split is None:
            continue
        prompt, chosen, rejected = (tok.encode(t).ids for t in split)
        chosen, rejected = chosen + [eos], rejected + [eos]
        if len(prompt) + max(len(chosen), len(rejected)) <= args.seq_len:
            pairs.append({"prompt_ids": prompt, "chosen_ids": chosen, "rejected_ids": rejected})
        if len(pairs) == need:
            break
    n_train = args.steps * args.batch
    data = {
        "train": pairs[:n_train],
        "eval": pairs[n_train:],
        "pad_id": special_token_ids(tok)["pad"],
    }
    (CACHE / "pairs.json").write_text(json.dumps(data))
    init = CACHE / f"init-{args.seq_len}-{args.seed}.pt"
    torch.manual_seed(args.seed)
    torch.save(LlamaLM(model_cfg(args.seq_len)).state_dict(), init)
    return init


def load_pairs() -> dict:
    return json.loads((CACHE / "pairs.json").read_text())


def batch_rows(pairs: list[dict], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The 2B rows ``prompt + chosen`` then ``prompt + rejected`` (TRL's order)."""
    from llmstack_dagster.core.posttraining.logprobs import pair_rows

    prompts = [p["prompt_ids"] for p in pairs]
    replies = [p["chosen_ids"] for p in pairs] + [p["rejected_ids"] for p in pairs]
    return pair_rows(prompts + prompts, replies, pad_id)


def pair_logprobs(model, pairs: list[dict], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Chosen and rejected sequence log-probabilities (B,) each."""
    from llmstack_dagster.core.posttraining.logprobs import sequence_logprobs

    logps, _ = sequence_logprobs(model, *batch_rows(pairs, pad_id))
    return logps.chunk(2)


def held_out(model, init: Path, args) -> dict:
    """DPO loss and reward accuracy of ``model`` on the held-out pairs, reference = init."""
    from llmstack_dagster.core.models.llama import LlamaLM
    from llmstack_dagster.core.posttraining.preference_losses import (
        PreferenceLossConfig,
        preference_loss,
    )

    data = load_pairs()
    ref = LlamaLM(model_cfg(args.seq_len))
    ref.load_state_dict(torch.load(init))
    model.eval()
    with torch.no_grad():
        rc, rr = pair_logprobs(ref, data["eval"], data["pad_id"])
        pc, pr = pair_logprobs(model, data["eval"], data["pad_id"])
    losses, m = preference_loss(PreferenceLossConfig(beta=args.beta), pc, pr, rc, rr)
    return {"loss": float(losses.mean()), "accuracy": float(m["rewards/accuracy"].mean())}


def worker_ours(args, init: Path) -> dict:
    from llmstack_dagster.core.models.llama import LlamaLM
    from llmstack_dagster.core.posttraining.logprobs import sequence_logprobs
    from llmstack_dagster.core.posttraining.preference_losses import (
        PreferenceLossConfig,
        preference_loss,
    )
    from llmstack_dagster.core.training.config import OptimConfig
    from llmstack_dagster.core.training.optim import build_optimizer

    data = load_pairs()
    pad_id, pairs = data["pad_id"], data["train"]
    model = LlamaLM(model_cfg(args.seq_len))
    model.load_state_dict(torch.load(init))
    t0 = time.perf_counter()
    batches = [pairs[i : i + args.batch] for i in range(0, len(pairs), args.batch)]
    with torch.no_grad():  # the cached reference: the initial weights, once, before training
        reference = [pair_logprobs(model, b, pad_id) for b in batches]
    setup_s = time.perf_counter() - t0
    opt = build_optimizer(
        model, OptimConfig(lr=args.lr, weight_decay=0.0, warmup_steps=0), torch.device("cpu")
    )
    cfg = PreferenceLossConfig(beta=args.beta)
    times, losses = [], []
    model.train()
    for batch, (ref_chosen, ref_rejected) in zip(batches, reference, strict=True):
        input_ids, targets = batch_rows(batch, pad_id)
        t0 = time.perf_counter()
        logps, _ = sequence_logprobs(model, input_ids, targets)
        chosen, rejected = logps.chunk(2)
        loss = preference_loss(cfg, chosen, rejected, ref_chosen, ref_rejected)[0].mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        losses.append(float(loss.detach()))
    return dict(
        times=times,
        losses=losses,
        setup_s=setup_s,
        rss_mb=peak_rss_mb(),
        held_out=held_out(model, init, args),
    )


def worker_trl(args, init: Path, side: str) -> dict:
    import trl
    from datasets import Dataset
    from transformers import LlamaForCausalLM
    from trl import DPOConfig, DPOTrainer

    from llmstack_dagster.core.models.llama import LlamaLM
    from llmstack_dagster.core.training.hf_export import hf_config, hf_state_dict
    from llmstack_dagster.core.training.hf_import import hf_to_state_dict

    cfg = model_cfg(args.seq_len)

    def twin() -> LlamaForCausalLM:
        config = hf_config(cfg)
        config._attn_implementation = "sdpa"
        hf = LlamaForCausalLM(config)
        hf.load_state_dict(hf_state_dict(torch.load(init), cfg), strict=False)
        if cfg.tie_embeddings:
            hf.tie_weights()
        return hf

    precompute = side == "trl-precompute"
    policy = twin()
    ref_model = None if precompute else twin()  # TRL cannot rebuild an in-memory model by name
    tokenizer = bench_tokenizer(CACHE / "tok" / "tokenizer.json")
    dpo_args = DPOConfig(
        **matched_trl_args(CACHE / "trl-out", args.steps, args.batch, args.lr, args.seed),
        gradient_checkpointing=side == "trl-gc",
        beta=args.beta,
        loss_type=["sigmoid"],
        precompute_ref_log_probs=precompute,
        max_length=None,
        train_sampling_strategy="sequential",
    )
    times, losses = [], []

    class PreTokenized(DPOTrainer):
        def _prepare_dataset(self, dataset, *_a, **_k):
            return dataset  # already ``prompt_ids`` / ``chosen_ids`` / ``rejected_ids``, ours

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            losses.append(float(loss.detach()))
            return loss

    t0 = time.perf_counter()
    trainer = PreTokenized(
        model=policy,
        ref_model=ref_model,
        args=dpo_args,
        train_dataset=Dataset.from_list(load_pairs()["train"]),
        processing_class=tokenizer,
        callbacks=[step_timer(times)],
    )
    setup_s = time.perf_counter() - t0
    trainer.train()
    ours = LlamaLM(cfg)
    ours.load_state_dict(hf_to_state_dict(policy.state_dict(), cfg), strict=False)
    return dict(
        times=times,
        losses=losses,
        setup_s=setup_s,
        rss_mb=peak_rss_mb(),
        held_out=held_out(ours, init, args),
        trl=trl.__version__,
    )


def summarize(side: str, r: dict, args) -> dict:
    med = statistics.median(r["times"][args.warmup :])
    return {
        "side": side,
        "steps": len(r["times"]),
        "median_step_s": round(med, 4),
        "steps_per_s": round(1 / med, 3),
        "pairs_per_s": round(args.batch / med, 2),
        "setup_s": round(r["setup_s"], 2),
        "peak_rss_mb": round(r["rss_mb"], 1),
        "loss_step0": round(r["losses"][0], 6),
        "loss_last": round(r["losses"][-1], 6),
        "losses": [round(x, 8) for x in r["losses"]],
        "held_out_loss": round(r["held_out"]["loss"], 6),
        "held_out_accuracy": round(r["held_out"]["accuracy"], 3),
    }


LABELS = {
    "ours": "ours (cached reference)",
    "trl": "TRL DPOTrainer (reference every step)",
    "trl-precompute": "TRL DPOTrainer (precompute_ref_log_probs)",
    "trl-gc": "TRL DPOTrainer (reference every step, gradient checkpointing)",
}

NOTES = """\
## Notes on fairness

- Same config (d_model 256, 4 layers, 8/4 heads, vocab 4096), initial weights (one seeded
  `LlamaLM` state dict, exported to `LlamaForCausalLM` with `hf_state_dict`), pairs in the same
  order (TRL: `train_sampling_strategy="sequential"`, pre-tokenized so the ids are ours), batch
  of pairs, steps, β, sigmoid loss, constant lr, fused AdamW (betas 0.9/0.95, eps 1e-8, no weight
  decay), grad clip 1.0, fp32, threads. Each side runs in its own process.
- Both run one forward of the 2B rows (chosen rows, then rejected rows) padded to the longest in
  the batch; TRL passes an attention mask, ours relies on right padding under a causal mask.
- Timing: the step from `on_step_begin` to `on_step_end` for TRL (batch collation is outside),
  and the same span for ours (`pair_rows` outside). Ours computes the reference log-probabilities
  once before training (`setup s`: that pass) and keeps no reference model; TRL's default keeps
  a second model and runs it at every step. `setup s` for TRL is the trainer's construction,
  which includes its reference pass with `precompute_ref_log_probs=True`.
- TRL 1.x's `DPOConfig` defaults to `gradient_checkpointing=True`; the main TRL rows turn it off
  (ours does not recompute activations), the last row keeps TRL's default. The speedup is
  against the TRL row with the reference every step and no checkpointing.
- Step 0 is the first batch before any update: the policy equals the reference, so the loss is
  log 2 on every side; later steps compare the training trajectories. The held-out loss is the
  DPO loss of the trained weights on separate pairs, computed by our model for every side.
- Timings share 2 cores with other work on the machine: rerun before drawing fine conclusions.
"""


def max_diff(a: dict, b: dict) -> float:
    """Largest |loss difference| over the steps (the same batch at each step on both sides)."""
    return max(abs(x - y) for x, y in zip(a["losses"], b["losses"], strict=True))


def write_results(rows: list[dict], meta: dict) -> None:
    data = merge_result(RESULTS / "dpo-cpu.json", meta["key"], {"meta": meta, "rows": rows})
    lines = ["# DPO step on CPU: ours (cached reference) vs TRL DPOTrainer", ""]
    for key, entry in sorted(data.items()):
        m = entry["meta"]
        lines += [
            f"## {key}",
            "",
            f"`{m['command']}`",
            "",
            f"torch {m['torch']}, transformers {m['transformers']}, trl {m['trl']}; {m['steps']} "
            f"steps (median over steps after {m['warmup']}), {m['batch']} pairs a step, "
            f"sequence <= {m['seq_len']}, β {m['beta']}, lr {m['lr']}, threads {m['threads']}",
            "",
            "| side | steps/s | pairs/s | median step s | setup s | peak RSS MB | loss step 0 "
            "| loss last step | max abs step-loss diff vs ours | held-out loss | held-out acc |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        ours = next(r for r in entry["rows"] if r["side"] == "ours")
        for r in entry["rows"]:
            lines.append(
                f"| {LABELS[r['side']]} | {r['steps_per_s']} | {r['pairs_per_s']} | "
                f"{r['median_step_s']} | {r['setup_s']} | {r['peak_rss_mb']} | "
                f"{r['loss_step0']} | {r['loss_last']} | {max_diff(ours, r):.1e} | "
                f"{r['held_out_loss']} | {r['held_out_accuracy']} |"
            )
        lines += ["", f"ours / TRL (reference every step) steps/s: {m['speedup']}x", ""]
    (RESULTS / "dpo-cpu.md").write_text("\n".join(lines) + "\n" + NOTES)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch", type=int, default=4, help="pairs a step")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--eval-pairs", type=int, default=16)
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="initial weights")
    p.add_argument("--only", choices=SIDES, help="run one side (no results written)")
    p.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    p.add_argument("--init", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        init = Path(args.init)
        result = worker_ours(args, init) if args.worker == "ours" else None
        result = result or worker_trl(args, init, args.worker)
        Path(args.out).write_text(json.dumps(result))
        return
    init = prepare(args)
    base = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if v is not None]
    base = [a for a in base if not a.startswith(("--only", "--worker", "--init", "--out"))]
    rows, trl_version = {}, None
    for side in [args.only] if args.only else SIDES:
        out = CACHE / f"result-{side}.json"
        cmd = [sys.executable, __file__, *base, "--worker", side, "--init", str(init)]
        subprocess.run([*cmd, "--out", str(out)], check=True)
        result = json.loads(out.read_text())
        trl_version = result.get("trl", trl_version)
        rows[side] = summarize(side, result, args)
        print(json.dumps({k: v for k, v in rows[side].items() if k != "losses"}))
    if args.only:
        return
    import transformers

    meta = {
        "key": f"small-b{args.batch}-s{args.seq_len}-t{args.threads}",
        "command": shlex.join([".bench-venv/bin/python", "bench/dpo.py", *sys.argv[1:]]),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl_version,
        "steps": args.steps,
        "warmup": args.warmup,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "beta": args.beta,
        "lr": args.lr,
        "threads": args.threads,
        "seed": args.seed,
        "speedup": round(rows["ours"]["steps_per_s"] / rows["trl"]["steps_per_s"], 2),
        "max_step_loss_diff": max_diff(rows["ours"], rows["trl"]),
    }
    write_results(list(rows.values()), meta)


if __name__ == "__main__":
    main()
