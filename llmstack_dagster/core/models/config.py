"""Llama-style decoder configuration, presets, parameter count and FLOPs per token."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

LLAMA3_FIELDS = ("low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


class RopeScaling(BaseModel):
    """RoPE frequency scaling for longer contexts, as Hugging Face's ``rope_type`` of that name.

    ``linear`` divides every frequency by ``factor`` (position interpolation, Chen et al. 2023);
    ``llama3`` (Llama 3.1) divides only the low frequencies, keeps the high ones and blends
    between the wavelengths ``original_max_position_embeddings / {low,high}_freq_factor``.
    """

    rope_type: Literal["linear", "llama3"]
    factor: float = Field(gt=0)
    low_freq_factor: float | None = None
    high_freq_factor: float | None = None
    original_max_position_embeddings: int | None = None

    @model_validator(mode="after")
    def _check_fields(self) -> RopeScaling:
        given = [name for name in LLAMA3_FIELDS if getattr(self, name) is not None]
        if self.rope_type == "linear" and given:
            raise ValueError(f"linear RoPE scaling takes only a factor, not {', '.join(given)}")
        if self.rope_type == "llama3":
            missing = [name for name in LLAMA3_FIELDS if name not in given]
            if missing:
                raise ValueError(f"llama3 RoPE scaling needs {', '.join(missing)}")
            if self.high_freq_factor <= self.low_freq_factor:
                raise ValueError("llama3 RoPE scaling needs high_freq_factor > low_freq_factor")
        return self


class ModelConfig(BaseModel):
    """Shape of a Llama-style decoder (RoPE, SwiGLU, pre-norm RMSNorm, optional GQA)."""

    vocab_size: int = 32768
    d_model: int = 768
    n_layers: int = 12
    n_heads: int = 12
    n_kv_heads: int = 12
    ffn_hidden: int = 2560
    max_seq_len: int = 2048
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    init_std: float = 0.02

    @model_validator(mode="after")
    def _check_shapes(self) -> ModelConfig:
        if self.d_model % self.n_heads:
            raise ValueError("d_model must be divisible by n_heads")
        if self.n_heads % self.n_kv_heads:
            raise ValueError("n_heads must be a multiple of n_kv_heads")
        if self.head_dim % 2:
            raise ValueError("head_dim must be even for RoPE")
        return self

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


PRESETS: dict[str, dict[str, Any]] = {
    # CPU tests and the demo: a few hundred thousand parameters plus the embedding.
    "tiny": dict(
        vocab_size=4096,
        d_model=128,
        n_layers=4,
        n_heads=4,
        n_kv_heads=2,
        ffn_hidden=384,
        max_seq_len=256,
    ),
    # ~124M, GPT-2-small scale.
    "d12": dict(d_model=768, n_layers=12, n_heads=12, n_kv_heads=12, ffn_hidden=2560),
    # ~342M, GPT-2-medium scale.
    "350m": dict(d_model=1024, n_layers=24, n_heads=16, n_kv_heads=16, ffn_hidden=2816),
    # ~1.04B, Llama-3.2-1B shape with a 32k vocabulary.
    "1b": dict(d_model=2048, n_layers=16, n_heads=32, n_kv_heads=8, ffn_hidden=8192),
}


def model_config(preset: str, **overrides: Any) -> ModelConfig:
    """A preset's config with field overrides (e.g. ``vocab_size`` from the tokenizer)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return ModelConfig(**{**PRESETS[preset], **overrides})


def block_params(cfg: ModelConfig) -> int:
    """Parameters of one transformer block: attention, SwiGLU MLP and two norms."""
    q_out = cfg.n_heads * cfg.head_dim
    kv_out = cfg.n_kv_heads * cfg.head_dim
    attention = cfg.d_model * (q_out + 2 * kv_out) + q_out * cfg.d_model
    mlp = 3 * cfg.d_model * cfg.ffn_hidden
    return attention + mlp + 2 * cfg.d_model


def param_count(cfg: ModelConfig) -> int:
    """All trainable parameters (a tied output head is counted once)."""
    embeddings = cfg.vocab_size * cfg.d_model * (1 if cfg.tie_embeddings else 2)
    return embeddings + cfg.n_layers * block_params(cfg) + cfg.d_model


def matmul_params(cfg: ModelConfig) -> int:
    """Parameters that take part in a matmul per token: blocks and the output head.

    The embedding lookup is a gather, not a matmul, so an untied input table is left out and
    a tied one is counted once (as the head). Norm weights are negligible and left out.
    """
    return cfg.n_layers * (block_params(cfg) - 2 * cfg.d_model) + cfg.vocab_size * cfg.d_model


def flops_per_token(cfg: ModelConfig, seq_len: int) -> int:
    """Training FLOPs per token, 6N + 12·L·H·Q·T (PaLM, Chowdhery et al. 2022, App. B)."""
    return 6 * matmul_params(cfg) + 12 * cfg.n_layers * cfg.n_heads * cfg.head_dim * seq_len
