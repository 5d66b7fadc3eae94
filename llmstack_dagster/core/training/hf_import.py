"""Import a Hugging Face Llama model (a local folder, or a GGUF file in one) as a weights folder.

The inverse of ``hf_export``. ``{dest}/``::

    model.safetensors       our names and fused layouts (a tied head stored once, as the embedding)
    model_config.json       ModelConfig
    tokenizer.json          the model's own tokenizer, via ``save_pretrained``; its
    tokenizer_config.json   config holds the chat template inline, as 4.x and 5.x both read
    source.json             source folder, GGUF file and the sha256 of model.safetensors

GGUF weights (quantized or not) are dequantized to float32 by transformers on loading, so our
model and ``transformers`` compute with the same float weights. ``export_weights_folder`` writes
such a folder back as a HF folder with its own tokenizer, so import, export and import again
gives bitwise the same weights and an equal ``ModelConfig``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from llmstack_dagster.core.models.config import LLAMA3_FIELDS, ModelConfig, RopeScaling
from llmstack_dagster.core.training.atomic import atomic_dir
from llmstack_dagster.core.training.hf_export import (
    TOKENIZER_CLASS,
    export_hf,
    hf_config_dict,
    hf_names,
    hf_state_dict,
    write_json,
)
from llmstack_dagster.core.training.token_shards import TokenShardIndex
from llmstack_dagster.core.training.tokenizer import has_our_special_tokens, load_tokenizer

if TYPE_CHECKING:
    from transformers import PretrainedConfig

WEIGHTS, MODEL_CONFIG, SOURCE = "model.safetensors", "model_config.json", "source.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# Loading options that transformers 5 keeps among a tokenizer's saved init arguments.
_LOADING_KEYS = ("is_local", "local_files_only")
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIR_ENV = "LLMSTACK_SMOLLM2_DIR"  # as in scripts/fetch_smollm2.sh


@dataclass(frozen=True)
class ImportedModel:
    """A written weights folder and what generation needs from it."""

    path: Path
    config: ModelConfig
    eos_id: int | None
    weights_sha256: str
    chat_template: str | None


def model_config_from_hf(hf_config: PretrainedConfig) -> ModelConfig:
    """Our config for a transformers ``LlamaConfig``; ValueError for what our model lacks."""
    if hf_config.model_type != "llama":
        raise ValueError(f"only Llama models can be imported, not {hf_config.model_type!r}")
    architectures = getattr(hf_config, "architectures", None) or ["LlamaForCausalLM"]
    if architectures != ["LlamaForCausalLM"]:
        raise ValueError(f"only LlamaForCausalLM can be imported, not {architectures}")
    for flag in ("attention_bias", "mlp_bias"):
        if getattr(hf_config, flag, False):
            raise ValueError(f"{flag}=True is unsupported: our model has no biases")
    if hf_config.hidden_act != "silu":
        raise ValueError(f"hidden_act {hf_config.hidden_act!r} is unsupported (only silu)")
    hidden, heads = hf_config.hidden_size, hf_config.num_attention_heads
    head_dim = getattr(hf_config, "head_dim", None) or hidden // heads
    if head_dim * heads != hidden:
        raise ValueError(
            f"head_dim {head_dim} is unsupported: it must equal hidden_size / "
            f"num_attention_heads = {hidden} / {heads}"
        )
    theta, scaling = _rope(hf_config)
    return ModelConfig(
        vocab_size=hf_config.vocab_size,
        d_model=hidden,
        n_layers=hf_config.num_hidden_layers,
        n_heads=heads,
        n_kv_heads=hf_config.num_key_value_heads or heads,
        ffn_hidden=hf_config.intermediate_size,
        max_seq_len=hf_config.max_position_embeddings,
        rope_theta=theta,
        rope_scaling=scaling,
        norm_eps=hf_config.rms_norm_eps,
        tie_embeddings=hf_config.tie_word_embeddings,
        init_std=hf_config.initializer_range,
    )


def _rope(hf_config: PretrainedConfig) -> tuple[float, RopeScaling | None]:
    """``rope_theta`` and scaling from ``rope_parameters`` (transformers 5) or the 4.x keys."""
    params: dict[str, Any] | None = getattr(hf_config, "rope_parameters", None)
    if params is None:
        params = {**(hf_config.rope_scaling or {}), "rope_theta": hf_config.rope_theta}
    if params.get("partial_rotary_factor", 1.0) != 1.0:
        raise ValueError("partial rotary embeddings (partial_rotary_factor) are unsupported")
    rope_type = params.get("rope_type", params.get("type", "default"))
    theta = float(params["rope_theta"])
    if rope_type == "default":
        return theta, None
    if rope_type == "linear":
        return theta, RopeScaling(rope_type="linear", factor=params["factor"])
    if rope_type == "llama3":
        fields = {name: params.get(name) for name in LLAMA3_FIELDS}
        fields["original_max_position_embeddings"] = (
            fields["original_max_position_embeddings"] or hf_config.max_position_embeddings
        )
        return theta, RopeScaling(rope_type="llama3", factor=params["factor"], **fields)
    raise ValueError(f"RoPE type {rope_type!r} is unsupported (only default, linear, llama3)")


def hf_to_state_dict(
    hf_state: dict[str, torch.Tensor], cfg: ModelConfig
) -> dict[str, torch.Tensor]:
    """``LlamaForCausalLM`` weights to our names and fused layouts, loadable into ``LlamaLM``.

    The inverse of ``hf_state_dict``; a tied head is the embedding tensor itself.
    """
    names = hf_names(cfg)
    known = {name for theirs in names.values() for name in theirs} | {"lm_head.weight"}
    if unknown := sorted(set(hf_state) - known):
        raise ValueError(f"unsupported weights in the Hugging Face model: {unknown[:5]}")
    state = {ours: torch.cat([hf_state[name] for name in theirs]) for ours, theirs in names.items()}
    if cfg.tie_embeddings:
        state["lm_head.weight"] = state["embed_tokens.weight"]
    return state


def import_hf(source: str | Path, dest: Path, gguf_file: str | None = None) -> ImportedModel:
    """Write the weights folder ``dest`` (atomically) for a local HF folder or its GGUF file.

    The config is checked before any weights are read; nothing is fetched from the Hub.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    options: dict[str, Any] = {"gguf_file": gguf_file, "local_files_only": True}
    hf_config = AutoConfig.from_pretrained(source, **options)
    cfg = model_config_from_hf(hf_config)
    tokenizer = AutoTokenizer.from_pretrained(source, **options)
    model = AutoModelForCausalLM.from_pretrained(
        source, config=hf_config, dtype=torch.float32, **options
    )
    state = hf_to_state_dict(model.state_dict(), cfg)
    if cfg.tie_embeddings:
        state.pop("lm_head.weight")
    with atomic_dir(Path(dest)) as tmp:
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt"})
        (tmp / MODEL_CONFIG).write_text(cfg.model_dump_json(indent=2) + "\n", encoding="utf-8")
        _save_tokenizer(tokenizer, tmp)
        digest = _sha256(tmp / WEIGHTS)
        source_info = {"source": str(Path(source).resolve()), "gguf_file": gguf_file}
        write_json(tmp / SOURCE, source_info | {"weights_sha256": digest})
    template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default")
    eos_id = tokenizer.eos_token_id
    if eos_id is None and isinstance(hf_config.eos_token_id, int):
        eos_id = hf_config.eos_token_id
    return ImportedModel(Path(dest), cfg, eos_id, digest, template)


def _save_tokenizer(tokenizer: Any, folder: Path) -> None:
    """``save_pretrained`` with the chat template inside ``tokenizer_config.json``.

    transformers 5 names its fast class ``TokenizersBackend``, which 4.x lacks; the alias
    ``PreTrainedTokenizerFast`` loads the same ``tokenizer.json`` in both.
    """
    tokenizer.save_pretrained(folder, save_jinja_files=False)
    if not (folder / "tokenizer.json").is_file():
        raise ValueError(f"{type(tokenizer).__name__} is no fast tokenizer (no tokenizer.json)")
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = TOKENIZER_CLASS
    for key in _LOADING_KEYS:
        config.pop(key, None)
    write_json(path, config)


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def read_model_config(folder: Path) -> ModelConfig:
    """The model shape of a weights folder, without loading its weights."""
    return ModelConfig.model_validate_json((Path(folder) / MODEL_CONFIG).read_text("utf-8"))


def load_weights_folder(folder: Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """The config and ``LlamaLM`` state dict of a weights folder (a tied head re-tied)."""
    folder = Path(folder)
    cfg = read_model_config(folder)
    state = load_file(str(folder / WEIGHTS))
    if cfg.tie_embeddings:
        state["lm_head.weight"] = state["embed_tokens.weight"]
    return cfg, state


def export_weights_folder(folder: Path, out_dir: Path) -> Path:
    """Write a weights folder as a HF folder (atomically) with its own tokenizer files.

    ``config.json`` takes BOS/EOS/PAD ids from the tokenizer; transformers derives the
    generation defaults from it. Returns ``out_dir``.
    """
    from transformers import AutoTokenizer

    folder = Path(folder)
    cfg, state = load_weights_folder(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    special_ids = {role: getattr(tokenizer, f"{role}_token_id") for role in ("bos", "eos", "pad")}
    with atomic_dir(Path(out_dir)) as tmp:
        write_json(tmp / "config.json", hf_config_dict(cfg, special_ids))
        save_file(hf_state_dict(state, cfg), str(tmp / WEIGHTS), metadata={"format": "pt"})
        for name in TOKENIZER_FILES:
            if (folder / name).is_file():
                shutil.copy2(folder / name, tmp / name)
    return Path(out_dir)


def export_with_tokenizer_of(checkpoint: Path, imported: Path, out_dir: Path) -> Path:
    """A checkpoint trained from an imported model, exported with that model's tokenizer
    files and chat template (a checkpoint stores its weights as a weights folder does)."""
    from llmstack_dagster.core.training.checkpoint import read_checkpoint_meta

    cfg = ModelConfig.model_validate(read_checkpoint_meta(checkpoint).model)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / WEIGHTS).symlink_to(Path(checkpoint).resolve() / WEIGHTS)
        (folder / MODEL_CONFIG).write_text(cfg.model_dump_json(indent=2), encoding="utf-8")
        for name in TOKENIZER_FILES:
            if (Path(imported) / name).is_file():
                shutil.copy2(Path(imported) / name, folder / name)
        return export_weights_folder(folder, out_dir)


def export_for_tokenizer(
    checkpoint: Path,
    dest: Path,
    tokenizer_file: Path,
    index: TokenShardIndex | None = None,
    tokenizer_dir: Path | None = None,
) -> Path:
    """The HF export of a checkpoint: with the files and chat template of the imported model
    it was trained from (``tokenizer_dir``), else of our tokenizer, else of the imported
    tokenizer beside ``tokenizer_file``."""
    if tokenizer_dir is None and has_our_special_tokens(load_tokenizer(tokenizer_file)):
        return export_hf(checkpoint, dest, tokenizer_file, index)
    return export_with_tokenizer_of(checkpoint, tokenizer_dir or tokenizer_file.parent, dest)


def smollm2_gguf() -> Path | None:
    """The GGUF file ``scripts/fetch_smollm2.sh`` caches, or None if it is not there."""
    default = Path.home() / ".cache" / "llmstack" / "smollm2"
    path = Path(os.environ.get(SMOLLM2_DIR_ENV) or default) / SMOLLM2_FILE
    return path if path.is_file() else None
