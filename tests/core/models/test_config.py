import pytest
import torch

from llmstack_dagster.core.models.config import (
    PRESETS,
    ModelConfig,
    RopeScaling,
    flops_per_token,
    matmul_params,
    model_config,
    param_count,
)
from llmstack_dagster.core.models.llama import LlamaLM


def counted(cfg: ModelConfig) -> int:
    with torch.device("meta"):
        model = LlamaLM(cfg)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_param_count_matches_the_built_model(preset: str) -> None:
    cfg = model_config(preset)
    assert param_count(cfg) == counted(cfg)
    untied = model_config(preset, tie_embeddings=False)
    assert param_count(untied) == counted(untied) == param_count(cfg) + cfg.vocab_size * cfg.d_model


def test_preset_sizes() -> None:
    sizes = {name: param_count(model_config(name)) / 1e6 for name in PRESETS}
    assert sizes["tiny"] < 5
    assert 115 < sizes["d12"] < 135
    assert 320 < sizes["350m"] < 380
    assert 950 < sizes["1b"] < 1150


def test_flops_per_token_formula_by_hand() -> None:
    cfg = ModelConfig(
        vocab_size=100,
        d_model=8,
        n_layers=2,
        n_heads=2,
        n_kv_heads=1,
        ffn_hidden=16,
        max_seq_len=32,
    )
    # per layer: q 8x8, k 8x4, v 8x4, o 8x8, gate/up/down 3x8x16; head 100x8
    n = 2 * (64 + 32 + 32 + 64 + 384) + 800
    assert matmul_params(cfg) == n
    assert flops_per_token(cfg, 32) == 6 * n + 12 * 2 * 2 * 4 * 32


def test_invalid_shapes_are_rejected() -> None:
    with pytest.raises(ValueError):
        ModelConfig(d_model=100, n_heads=3)
    with pytest.raises(ValueError):
        ModelConfig(d_model=96, n_heads=6, n_kv_heads=4)
    with pytest.raises(ValueError):
        model_config("nope")


def test_rope_scaling_defaults_to_none_and_old_dumps_still_load() -> None:
    cfg = model_config("tiny")
    assert cfg.rope_scaling is None
    old = cfg.model_dump(exclude={"rope_scaling"})  # meta.json of checkpoints before the field
    assert ModelConfig.model_validate(old) == cfg
    scaled = cfg.model_copy(update={"rope_scaling": RopeScaling(rope_type="linear", factor=4)})
    assert ModelConfig.model_validate_json(scaled.model_dump_json()) == scaled


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"rope_type": "llama3", "factor": 8.0}, "needs low_freq_factor"),
        ({"rope_type": "linear", "factor": 2.0, "low_freq_factor": 1.0}, "only a factor"),
        ({"rope_type": "linear", "factor": 0.0}, "greater than 0"),
        ({"rope_type": "yarn", "factor": 2.0}, "linear"),
        (
            {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 4.0,
                "high_freq_factor": 1.0,
                "original_max_position_embeddings": 8192,
            },
            "high_freq_factor > low_freq_factor",
        ),
    ],
)
def test_invalid_rope_scaling_is_rejected(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RopeScaling(**fields)
