"""The key/value cache of batched generation: each layer's keys and values of every position
so far, so that a new token costs one position's compute instead of the whole sequence's.

Rows are left-padded prompts: ``key_valid`` (B, capacity) marks the positions that hold real
tokens, and the attention mask lets a token see the real tokens before it and itself (so a
padding position never has an empty row, which would give NaN). Finished rows are dropped
with :meth:`KVCache.keep`, so the batch shrinks as answers end.
"""

from __future__ import annotations

import torch


class LayerCache:
    """One layer's keys and values, (B, H_kv, capacity, head_dim), allocated on first use in
    the dtype the layer computes in (bf16 under autocast)."""

    def __init__(self, owner: KVCache) -> None:
        self.owner = owner
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k``, ``v`` (B, H_kv, T, head_dim) after the cached positions; return every
        position's keys and values."""
        start = self.owner.length
        stop = start + k.shape[2]
        if self.keys is None or self.values is None:
            shape = (k.shape[0], k.shape[1], self.owner.capacity, k.shape[3])
            self.keys = k.new_zeros(shape)
            self.values = v.new_zeros(shape)
        self.keys[:, :, start:stop] = k
        self.values[:, :, start:stop] = v
        return self.keys[:, :, :stop], self.values[:, :, :stop]


class KVCache:
    """Every layer's cache, the number of positions filled and which of them are real."""

    def __init__(self, n_layers: int, key_valid: torch.Tensor) -> None:
        self.key_valid = key_valid  # (B, capacity) bool
        self.capacity = key_valid.shape[1]
        self.length = 0
        self.layers = [LayerCache(self) for _ in range(n_layers)]

    @classmethod
    def for_prompts(cls, n_layers: int, prompt_valid: torch.Tensor, capacity: int) -> KVCache:
        """A cache for left-padded prompts (``prompt_valid`` (B, T): False on padding) that
        will grow to ``capacity`` positions."""
        batch, length = prompt_valid.shape
        if capacity < length:
            raise ValueError(f"a cache of {capacity} positions cannot hold {length}")
        valid = torch.ones(batch, capacity, dtype=torch.bool, device=prompt_valid.device)
        valid[:, :length] = prompt_valid
        return cls(n_layers, valid)

    def attention_mask(self, seq: int) -> torch.Tensor:
        """Boolean SDPA mask (B, 1, seq, length + seq) for the next ``seq`` positions."""
        stop = self.length + seq
        if stop > self.capacity:
            raise ValueError(f"the cache holds {self.capacity} positions, not {stop}")
        device = self.key_valid.device
        query = torch.arange(self.length, stop, device=device)[:, None]
        key = torch.arange(stop, device=device)[None, :]
        visible = (key <= query) & self.key_valid[:, None, :stop]
        return (visible | (key == query))[:, None]

    def advance(self, seq: int) -> None:
        self.length += seq

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` (indices into the batch), in that order."""
        self.key_valid = self.key_valid[rows]
        for layer in self.layers:
            if layer.keys is not None and layer.values is not None:
                layer.keys, layer.values = layer.keys[rows], layer.values[rows]
