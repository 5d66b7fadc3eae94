"""Export a checkpoint as a Llama-compatible Hugging Face folder.

The folder holds ``config.json``, ``model.safetensors`` and the tokenizer files, so
``transformers.AutoModelForCausalLM.from_pretrained(folder)`` and lm-evaluation-harness
(``lm_eval --model hf --model_args pretrained=<folder>``) load it. Our RoPE uses HF's
rotate-half layout, so Q/K need no permutation; only the fused Q/K/V and gate/up
projections are split.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file

from llmstack_dagster.core.models.config import ModelConfig
from llmstack_dagster.core.training.atomic import atomic_dir
from llmstack_dagster.core.training.checkpoint import read_checkpoint_meta
from llmstack_dagster.core.training.tokenizer import SPECIAL_TOKENS, load_tokenizer

if TYPE_CHECKING:
    from transformers import LlamaConfig, PreTrainedTokenizerFast


def hf_state_dict(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Our parameter names and fused layouts to ``LlamaForCausalLM``'s."""
    q_out, kv_out = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    out = {
        "model.embed_tokens.weight": state["embed_tokens.weight"],
        "model.norm.weight": state["norm.weight"],
    }
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = state["lm_head.weight"]
    for i in range(cfg.n_layers):
        ours, theirs = f"layers.{i}.", f"model.layers.{i}."
        q, k, v = state[ours + "attn.qkv.weight"].split([q_out, kv_out, kv_out], dim=0)
        gate, up = state[ours + "mlp.gate_up.weight"].chunk(2, dim=0)
        out |= {
            theirs + "input_layernorm.weight": state[ours + "attn_norm.weight"],
            theirs + "post_attention_layernorm.weight": state[ours + "mlp_norm.weight"],
            theirs + "self_attn.q_proj.weight": q,
            theirs + "self_attn.k_proj.weight": k,
            theirs + "self_attn.v_proj.weight": v,
            theirs + "self_attn.o_proj.weight": state[ours + "attn.out.weight"],
            theirs + "mlp.gate_proj.weight": gate,
            theirs + "mlp.up_proj.weight": up,
            theirs + "mlp.down_proj.weight": state[ours + "mlp.down.weight"],
        }
    return {name: t.contiguous() for name, t in out.items()}


def hf_config(cfg: ModelConfig, special_ids: dict[str, int] | None = None) -> LlamaConfig:
    """A ``transformers.LlamaConfig`` equal to our architecture."""
    from transformers import LlamaConfig

    ids = special_ids or {}
    return LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.ffn_hidden,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads,
        head_dim=cfg.head_dim,
        max_position_embeddings=cfg.max_seq_len,
        rms_norm_eps=cfg.norm_eps,
        rope_theta=cfg.rope_theta,
        tie_word_embeddings=cfg.tie_embeddings,
        attention_bias=False,
        mlp_bias=False,
        hidden_act="silu",
        initializer_range=cfg.init_std,
        bos_token_id=ids.get("bos"),
        eos_token_id=ids.get("eos"),
        pad_token_id=ids.get("pad"),
        torch_dtype="float32",
    )


def export_hf(checkpoint_dir: Path, out_dir: Path, tokenizer_file: Path | None = None) -> Path:
    """Write the HF folder for a checkpoint (atomically); returns ``out_dir``."""
    meta = read_checkpoint_meta(checkpoint_dir)
    cfg = ModelConfig.model_validate(meta.model)
    state = hf_state_dict(load_file(str(Path(checkpoint_dir) / "model.safetensors")), cfg)
    special_ids = None
    if tokenizer_file is not None:
        tok = load_tokenizer(tokenizer_file)
        special_ids = {
            role: tok.token_to_id(SPECIAL_TOKENS[role]) for role in ("bos", "eos", "pad")
        }
    with atomic_dir(Path(out_dir)) as tmp:
        hf_config(cfg, special_ids).save_pretrained(tmp)
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        if tokenizer_file is not None:
            fast_tokenizer(tokenizer_file).save_pretrained(tmp)
    return Path(out_dir)


def fast_tokenizer(tokenizer_file: Path) -> PreTrainedTokenizerFast:
    """Our ``tokenizer.json`` as a ``transformers.PreTrainedTokenizerFast`` with its roles."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_file),
        bos_token=SPECIAL_TOKENS["bos"],
        eos_token=SPECIAL_TOKENS["eos"],
        pad_token=SPECIAL_TOKENS["pad"],
        additional_special_tokens=[
            SPECIAL_TOKENS[role] for role in ("system", "user", "assistant", "end_turn")
        ],
    )
