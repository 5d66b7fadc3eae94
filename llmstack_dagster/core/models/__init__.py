"""Model architectures (pure PyTorch, no Dagster)."""

from llmstack_dagster.core.models.config import (
    PRESETS,
    ModelConfig,
    RopeScaling,
    flops_per_token,
    model_config,
    param_count,
)
from llmstack_dagster.core.models.llama import LlamaLM

__all__ = [
    "PRESETS",
    "LlamaLM",
    "ModelConfig",
    "RopeScaling",
    "flops_per_token",
    "model_config",
    "param_count",
]
