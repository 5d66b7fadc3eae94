"""Batched generation with a key/value cache: greedy, or temperature and nucleus sampling
(Holtzman et al. 2020) with a seed per prompt.

Prompts are sorted by length and cut into batches; each batch is left-padded, prefilled in
one forward pass, then decoded one token a step with the cache (``kv_cache.py``). A row
stops at a stop id (not returned) or after ``max_new_tokens``, and leaves the batch. Each
prompt samples from its own ``torch.Generator`` seeded with its seed, so an answer does not
depend on which other prompts share its batch (up to float rounding of padded batches).
A prompt longer than the model's window minus ``max_new_tokens`` keeps its last tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch
from torch import nn

from llmstack_dagster.core.models.kv_cache import KVCache
from llmstack_dagster.core.models.llama import LlamaLM

Autocast = Callable[[], AbstractContextManager]


def unwrap(model: nn.Module) -> LlamaLM:
    """The ``LlamaLM`` inside a DDP or ``torch.compile`` wrapper."""
    inner = getattr(model, "_orig_mod", model)
    inner = getattr(inner, "module", inner)
    if not isinstance(inner, LlamaLM):
        raise TypeError(f"generation needs a LlamaLM, not {type(inner).__name__}")
    return inner


@contextmanager
def _gathered(model: LlamaLM) -> Iterator[None]:
    """FSDP2 gathers a module's parameters in its forward hooks; decoding calls the root's
    embedding and head outside ``forward``, so gather the root's parameters around it."""
    unshard = getattr(model, "unshard", None)
    if unshard is None:
        yield
        return
    unshard()
    try:
        yield
    finally:
        model.reshard()  # type: ignore[attr-defined]


def next_tokens(
    logits: torch.Tensor,
    temperature: float,
    top_p: float,
    generators: Sequence[torch.Generator],
) -> torch.Tensor:
    """One token per row of ``logits`` (B, V): the argmax at temperature 0, else a draw from
    the smallest set of tokens whose probability reaches ``top_p``."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1).cpu()
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    keep = sorted_probs.cumsum(dim=-1) - sorted_probs < top_p
    sorted_probs = sorted_probs * keep
    picks = [
        order[row, torch.multinomial(sorted_probs[row], 1, generator=gen)]
        for row, gen in enumerate(generators)
    ]
    return torch.cat(picks).to(logits.device)


@torch.no_grad()
def generate_batch(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    temperature: float = 0.0,
    top_p: float = 1.0,
    stop_ids: Collection[int] = (),
    seeds: Sequence[int] | None = None,
    batch_size: int = 32,
    autocast: Autocast = nullcontext,
) -> list[list[int]]:
    """The new ids of each prompt's continuation, in the prompts' order."""
    lm = unwrap(model)
    if seeds is not None and len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
    if not prompts or max_new_tokens < 1:
        return [[] for _ in prompts]
    window = lm.cfg.max_seq_len
    max_new = min(max_new_tokens, window - 1)
    was_training = lm.training
    lm.eval()
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[list[int]] = [[] for _ in prompts]
    try:
        with _gathered(lm):
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                batch = [list(prompts[i])[-(window - max_new) :] or [0] for i in rows]
                gens = [torch.Generator().manual_seed(seeds[i] if seeds else i) for i in rows]
                answers = _decode_batch(
                    lm, batch, max_new, temperature, top_p, set(stop_ids), gens, autocast
                )
                for row, ids in zip(rows, answers, strict=True):
                    out[row] = ids
    finally:
        lm.train(was_training)
    return out


def _decode_batch(
    lm: LlamaLM,
    prompts: list[list[int]],
    max_new: int,
    temperature: float,
    top_p: float,
    stop_ids: set[int],
    generators: list[torch.Generator],
    autocast: Autocast,
) -> list[list[int]]:
    """Prefill the left-padded batch, then one cached step per token until every row ends."""
    device = lm.embed_tokens.weight.device
    width = max(len(p) for p in prompts)
    pads = torch.tensor([width - len(p) for p in prompts], device=device)
    idx = torch.tensor([[0] * (width - len(p)) + p for p in prompts], device=device)
    offsets = torch.arange(width, device=device)[None, :] - pads[:, None]
    positions = offsets.clamp(min=0)
    cache = KVCache.for_prompts(len(lm.layers), offsets >= 0, width + max_new)
    active = list(range(len(prompts)))  # batch row -> prompt
    new: list[list[int]] = [[] for _ in prompts]
    next_pos = positions[:, -1] + 1
    with autocast():
        logits = lm.decode(idx, positions, cache)
    for step in range(max_new):
        tokens = next_tokens(logits, temperature, top_p, [generators[i] for i in active]).tolist()
        keep = []
        for row, (prompt, token) in enumerate(zip(active, tokens, strict=True)):
            if token in stop_ids:
                continue
            new[prompt].append(token)
            keep.append(row)
        if not keep or step == max_new - 1:
            break
        if len(keep) < len(active):
            rows = torch.tensor(keep, device=device)
            cache.keep(rows)
            next_pos = next_pos[rows]
            active = [active[r] for r in keep]
            tokens = [tokens[r] for r in keep]
        token_ids = torch.tensor(tokens, device=device)[:, None]
        with autocast():
            logits = lm.decode(token_ids, next_pos[:, None], cache)
        next_pos = next_pos + 1
    return new
