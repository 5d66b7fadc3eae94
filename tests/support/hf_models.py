"""Tiny random Hugging Face Llama models saved to a folder, for the import tests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from llmstack_dagster.core.training.hf_export import fast_tokenizer

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end_turn|>{% endfor %}"
)


def tiny_hf_config(**overrides: Any) -> Any:
    from transformers import LlamaConfig

    fields = dict(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 5000.0},
        tie_word_embeddings=False,
    )
    return LlamaConfig(**copy.deepcopy(fields | overrides))  # transformers edits the dicts


def write_hf_model(folder: Path, tokenizer_file: Path, **overrides: Any) -> Any:
    """A random ``LlamaForCausalLM`` (norm weights too) and a tokenizer, saved to ``folder``."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_hf_config(**overrides)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    model.save_pretrained(folder)
    tokenizer = fast_tokenizer(tokenizer_file)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    return model
