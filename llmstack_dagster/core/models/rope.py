"""Rotary position embeddings in the "rotate half" layout used by Hugging Face Llama.

Each head vector of size ``Q`` is split into halves ``(x1, x2)``; pair ``i`` is
``(x1[i], x2[i])`` rotated by angle ``pos * theta**(-2i/Q)`` (Su et al. 2021, RoFormer),
with the frequencies optionally rescaled for longer contexts (``RopeScaling``).
"""

from __future__ import annotations

import math

import torch

from llmstack_dagster.core.models.config import RopeScaling


def inverse_frequencies(
    head_dim: int, theta: float, scaling: RopeScaling | None = None
) -> torch.Tensor:
    """The ``head_dim / 2`` rotation frequencies, in float64.

    The scaled forms follow transformers' ``_compute_linear_scaling_rope_parameters`` and
    ``_compute_llama3_parameters`` formula for formula (they compute in float32).
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    if scaling is None:
        return inv_freq
    if scaling.rope_type == "linear":
        return inv_freq / scaling.factor
    return _llama3_frequencies(inv_freq, scaling)


def _llama3_frequencies(inv_freq: torch.Tensor, scaling: RopeScaling) -> torch.Tensor:
    """Wavelengths above ``old / low`` are divided by the factor, those below ``old / high``
    kept, and those in between blended linearly in ``old / wavelength``."""
    old, factor = scaling.original_max_position_embeddings, scaling.factor
    low, high = scaling.low_freq_factor, scaling.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old / low, inv_freq / factor, inv_freq)
    smooth = (old / wavelen - low) / (high - low)
    blended = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    medium = (wavelen >= old / high) & (wavelen <= old / low)
    return torch.where(medium, blended, scaled)


def rope_tables(
    head_dim: int, max_seq_len: int, theta: float, scaling: RopeScaling | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables of shape (max_seq_len, head_dim), in float32."""
    inv_freq = inverse_frequencies(head_dim, theta, scaling)
    angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float64), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().float(), angles.sin().float()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` of shape (B, H, T, Q) with tables sliced to (T, Q) or gathered per token
    to (B, 1, T, Q)."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return x * cos + rotate_half(x) * sin
