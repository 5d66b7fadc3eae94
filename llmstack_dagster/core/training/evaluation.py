"""Validation loss and bits-per-byte per domain, and sample generations (batched, with a
key/value cache: ``core/models/generation.py``).

Bits per byte = (mean loss in nats per token) · (tokens / UTF-8 bytes of the domain's val
documents) / ln 2, which compares models across tokenizers (as in The Pile, Gao et al. 2020).
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from llmstack_dagster.core.models.generation import Autocast, generate_batch
from llmstack_dagster.core.training.config import EvalConfig
from llmstack_dagster.core.training.data_loader import TokenWindows
from llmstack_dagster.core.training.token_shards import TokenShardIndex


@torch.no_grad()
def evaluate_domains(
    model: nn.Module,
    data_dir: Path,
    index: TokenShardIndex,
    seq_len: int,
    batch_size: int,
    max_batches: int,
    device: torch.device,
    autocast: Autocast = nullcontext,
) -> dict[str, float]:
    """``val/<domain>/loss``, ``val/<domain>/bpb`` and the token-weighted ``val/loss``."""
    was_training = model.training
    model.eval()
    out: dict[str, float] = {}
    total_nats = total_tokens = 0.0
    for domain, stats in index.domains.items():
        shards = index.split_shards("val", domain)
        length = min(seq_len, sum(s.tokens for s in shards) - 1)
        if not shards or length < 1 or stats.val_text_bytes == 0:
            continue
        windows = TokenWindows(data_dir, index, shards, length)
        ids = np.arange(min(len(windows), batch_size * max_batches))
        nats = tokens = 0.0
        for start in range(0, len(ids), batch_size):
            x, y = windows.batch(ids[start : start + batch_size])
            with autocast():
                losses = model(x.to(device), y.to(device), reduction="none")
            nats += float(losses.float().sum())
            tokens += y.numel()
        loss = nats / tokens
        out[f"val/{domain}/loss"] = loss
        out[f"val/{domain}/bpb"] = loss * stats.val_tokens / stats.val_text_bytes / math.log(2)
        total_nats, total_tokens = total_nats + nats, total_tokens + tokens
    if total_tokens:
        out["val/loss"] = total_nats / total_tokens
    model.train(was_training)
    return out


def sample_continuations(
    model: nn.Module,
    tokenizer: Tokenizer,
    prompts: list[tuple[str, list[int]]],
    cfg: EvalConfig,
    stop_id: int,
    seed: int,
    autocast: Autocast = nullcontext,
) -> list[dict[str, str]]:
    """For each ``(label, prompt ids)``: its greedy and its top-p continuation, up to
    ``stop_id`` (the end of a document, or of an assistant turn), generated in batches."""
    ids = [p for _, p in prompts]
    seeds = [seed + i for i in range(len(prompts))]
    answers = {
        mode: generate_batch(
            model, ids, cfg.max_new_tokens, temperature=temperature, top_p=cfg.top_p,
            stop_ids={stop_id}, seeds=seeds, autocast=autocast,
        )  # fmt: skip
        for mode, temperature in (("greedy", 0.0), ("top_p", cfg.temperature))
    }
    return [
        {"prompt": label, **{mode: tokenizer.decode(new[i]) for mode, new in answers.items()}}
        for i, (label, _) in enumerate(prompts)
    ]


def sample_generations(
    model: nn.Module, tokenizer: Tokenizer, cfg: EvalConfig, eos_id: int, seed: int
) -> list[dict[str, str]]:
    """For each of the config's text prompts: its greedy and its top-p continuation."""
    prompts = [(p, tokenizer.encode(p, add_special_tokens=False).ids) for p in cfg.prompts]
    return sample_continuations(model, tokenizer, prompts, cfg, eos_id, seed)


def generations_markdown(samples: list[dict[str, str]], top_p: float) -> str:
    """A markdown table of prompts and continuations ("" when there is none: a task that
    generates nothing, such as the reward model)."""
    if not samples:
        return ""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", "⏎ ")

    lines = [f"| prompt | greedy | top-p {top_p} |", "| --- | --- | --- |"]
    lines += [
        f"| {cell(s['prompt'])} | {cell(s['greedy'])} | {cell(s['top_p'])} |" for s in samples
    ]
    return "\n".join(lines)
