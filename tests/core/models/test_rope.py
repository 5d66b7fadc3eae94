import math

import pytest
import torch

from llmstack_dagster.core.models.config import RopeScaling
from llmstack_dagster.core.models.rope import inverse_frequencies, rope_tables

HEAD_DIM, THETA = 16, 5000.0
# Wavelengths 2*pi*5000**(2i/16) run from 6.3 to ~1e4: with an original context of 64 and
# factors 1 and 4, pair 0 is kept (< 16), pairs 1-2 are blended and the rest are divided.
LLAMA3 = RopeScaling(
    rope_type="llama3",
    factor=8.0,
    low_freq_factor=1.0,
    high_freq_factor=4.0,
    original_max_position_embeddings=64,
)
LINEAR = RopeScaling(rope_type="linear", factor=2.0)


def transformers_inv_freq(scaling: RopeScaling) -> torch.Tensor:
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    params = scaling.model_dump(exclude_none=True) | {"rope_theta": THETA}
    config = LlamaConfig(hidden_size=HEAD_DIM * 4, num_attention_heads=4, rope_parameters=params)
    inv_freq, attention_factor = ROPE_INIT_FUNCTIONS[scaling.rope_type](config)
    assert attention_factor == 1.0
    return inv_freq


@pytest.mark.parametrize("scaling", [LINEAR, LLAMA3], ids=lambda s: s.rope_type)
def test_scaled_frequencies_match_transformers(scaling: RopeScaling) -> None:
    ours = inverse_frequencies(HEAD_DIM, THETA, scaling)
    torch.testing.assert_close(ours.float(), transformers_inv_freq(scaling), rtol=1e-6, atol=0)


def test_llama3_keeps_high_blends_medium_and_divides_low_frequencies() -> None:
    plain = inverse_frequencies(HEAD_DIM, THETA)
    ratio = inverse_frequencies(HEAD_DIM, THETA, LLAMA3) / plain
    wavelen = 2 * math.pi / plain
    assert ratio[0] == 1.0 and wavelen[0] < 16
    assert ((ratio[1:3] > 1 / 8) & (ratio[1:3] < 1)).all()
    torch.testing.assert_close(ratio[3:], torch.full_like(ratio[3:], 1 / 8))
    torch.testing.assert_close(inverse_frequencies(HEAD_DIM, THETA, LINEAR), plain / 2)


def test_linear_scaling_stretches_positions() -> None:
    cos, sin = rope_tables(HEAD_DIM, 32, THETA, LINEAR)
    plain_cos, plain_sin = rope_tables(HEAD_DIM, 64, THETA)
    # position p under factor 2 is position p / 2 unscaled: even positions line up
    torch.testing.assert_close(cos[0:32:2], plain_cos[0:16], atol=1e-6, rtol=0)
    torch.testing.assert_close(sin[0:32:2], plain_sin[0:16], atol=1e-6, rtol=0)
