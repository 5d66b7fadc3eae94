"""A Llama-style decoder-only language model.

Pre-norm RMSNorm blocks with grouped-query attention through
``torch.nn.functional.scaled_dot_product_attention``, RoPE, a SwiGLU MLP and no biases.
Packed rows (several sequences back to back, for SFT) pass ``segment_ids`` and
``position_ids``: attention is then causal within each segment only (a boolean SDPA mask)
and RoPE positions restart per segment. Without them the plain causal path runs unchanged.
Q/K/V and the MLP's gate/up projections are fused into one matmul each; the Hugging Face
export splits them again (see ``core/training/hf_export.py``). The training loss fuses the
output head with the cross-entropy (``core/models/loss.py``). Generation runs through
:meth:`LlamaLM.decode` with a key/value cache (``core/models/kv_cache.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from llmstack_dagster.core.models.config import ModelConfig
from llmstack_dagster.core.models.kv_cache import KVCache, LayerCache
from llmstack_dagster.core.models.loss import IGNORE_INDEX, linear_cross_entropy
from llmstack_dagster.core.models.rope import apply_rope, rope_tables


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)
        return out * self.weight.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        q_out, kv_out = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
        self.qkv = nn.Linear(cfg.d_model, q_out + 2 * kv_out, bias=False)
        self.out = nn.Linear(q_out, cfg.d_model, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        cache: LayerCache | None = None,
    ) -> torch.Tensor:
        batch, seq, _ = x.shape
        q_out, kv_out = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        q, k, v = self.qkv(x).split([q_out, kv_out, kv_out], dim=-1)
        q = q.view(batch, seq, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.view(batch, seq, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(batch, seq, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:  # the keys and values of every position so far
            k, v = cache.append(k, v)
        gqa = self.n_kv_heads != self.n_heads
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        return self.out(y.transpose(1, 2).reshape(batch, seq, q_out))


class SwiGLU(nn.Module):
    """``down(silu(gate(x)) * up(x))`` (Shazeer 2020)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate_up = nn.Linear(cfg.d_model, 2 * cfg.ffn_hidden, bias=False)
        self.down = nn.Linear(cfg.ffn_hidden, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        cache: LayerCache | None = None,
    ) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, mask, cache)
        return x + self.mlp(self.mlp_norm(x))


class LlamaLM(nn.Module):
    """The decoder with its LM head; ``forward(idx)`` gives logits, with targets the loss."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        cos, sin = rope_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta, cfg.rope_scaling)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Normal(0, init_std) weights; residual outputs scaled by 1/sqrt(2L) (GPT-2)."""
        std = self.cfg.init_std
        for name, param in self.named_parameters():
            if name.endswith("norm.weight"):
                nn.init.ones_(param)
            elif name.endswith(("attn.out.weight", "mlp.down.weight")):
                nn.init.normal_(param, std=std / math.sqrt(2 * self.cfg.n_layers))
            else:
                nn.init.normal_(param, std=std)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        reduction: str = "mean",
        position_ids: torch.Tensor | None = None,
        segment_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, T, V) without targets; else the cross-entropy (mean, sum or per token).

        Targets of -100 are ignored (per token: a loss of 0, and no LM head is computed for
        them, so scoring a reply after a long prompt costs the reply's head only).
        ``position_ids`` (B, T) index the RoPE tables per token;
        ``segment_ids`` (B, T) make attention block-diagonal: a token attends only to earlier
        tokens of the same segment (padding, segment 0, forms its own). A mean or sum loss
        under autograd goes through ``linear_cross_entropy``, which never keeps the
        full-vocabulary logits (its mean takes no ignored targets: use the sum for masks).
        """
        x = self.hidden(idx, position_ids, segment_ids)
        if targets is not None and reduction in ("mean", "sum") and torch.is_grad_enabled():
            return linear_cross_entropy(
                x.flatten(0, 1), self.lm_head.weight, targets.flatten(), reduction=reduction
            )
        if targets is not None and reduction == "none":  # the head only where there is a target
            keep = targets != IGNORE_INDEX
            losses = torch.zeros(targets.shape, dtype=torch.float32, device=targets.device)
            losses[keep] = F.cross_entropy(
                self.lm_head(x[keep]).float(), targets[keep], reduction="none"
            )
            return losses
        logits = self.lm_head(x)
        if targets is None:
            return logits
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction=reduction)

    def hidden(
        self,
        idx: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        segment_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The final normed hidden states (B, T, d_model), before the LM head."""
        seq = idx.shape[1]
        if seq > self.cfg.max_seq_len:
            raise ValueError(f"sequence of {seq} tokens exceeds max_seq_len")
        if position_ids is None:
            cos, sin = self.rope_cos[:seq], self.rope_sin[:seq]
        else:
            cos, sin = self.rope_cos[position_ids][:, None], self.rope_sin[position_ids][:, None]
        mask = None if segment_ids is None else segment_mask(segment_ids)
        x = self.embed_tokens(idx)
        for block in self.layers:
            x = block(x, cos, sin, mask)
        return self.norm(x)

    def decode(
        self, idx: torch.Tensor, position_ids: torch.Tensor, cache: KVCache
    ) -> torch.Tensor:
        """Logits (B, V) of the last position of ``idx`` (B, T), appended to ``cache``.

        ``position_ids`` (B, T) are each token's RoPE position (left padding makes them differ
        per row); ``cache.key_valid`` says which cached positions are real tokens. A token
        attends to the real tokens before it and to itself.
        """
        cos, sin = self.rope_cos[position_ids][:, None], self.rope_sin[position_ids][:, None]
        mask = cache.attention_mask(idx.shape[1])
        x = self.embed_tokens(idx)
        for block, layer in zip(self.layers, cache.layers, strict=True):
            x = block(x, cos, sin, mask, layer)
        cache.advance(idx.shape[1])
        return self.lm_head(self.norm(x[:, -1]))


def segment_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """Boolean SDPA mask (B, 1, T, T): causal and within the same segment."""
    seq = segment_ids.shape[1]
    causal = torch.ones(seq, seq, dtype=torch.bool, device=segment_ids.device).tril()
    return (segment_ids[:, :, None] == segment_ids[:, None, :])[:, None] & causal
