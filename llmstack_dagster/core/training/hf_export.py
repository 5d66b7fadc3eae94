"""Export a checkpoint as a Llama-compatible Hugging Face folder.

The folder holds ``config.json``, ``generation_config.json``, ``model.safetensors``, the
tokenizer files and a model card (``README.md``), so
``transformers.AutoModelForCausalLM.from_pretrained(folder)`` and lm-evaluation-harness
(``lm_eval --model hf --model_args pretrained=<folder>``) load it. Our RoPE uses HF's
rotate-half layout, so Q/K need no permutation; only the fused Q/K/V and gate/up
projections are split (``hf_names``; ``hf_import`` fuses them back).

The JSON files are written by hand rather than by ``save_pretrained``: transformers 5 writes
``rope_parameters`` and ``tokenizer_class: TokenizersBackend``, which transformers 4.x ignores
or cannot load. The hand-written forms (legacy ``rope_theta``, ``PreTrainedTokenizerFast``)
load the same in 4.45+ and 5.x.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from llmstack_dagster.core.chat.render import OUR_CHAT_TEMPLATE
from llmstack_dagster.core.models.config import ModelConfig
from llmstack_dagster.core.training.atomic import atomic_dir
from llmstack_dagster.core.training.checkpoint import CheckpointMeta, read_checkpoint_meta
from llmstack_dagster.core.training.config import EvalConfig
from llmstack_dagster.core.training.token_shards import (
    INDEX_FILE,
    TokenShardIndex,
    load_token_index,
)
from llmstack_dagster.core.training.tokenizer import (
    SPECIAL_TOKENS,
    load_tokenizer,
    special_token_ids,
)

if TYPE_CHECKING:
    from transformers import LlamaConfig, PreTrainedTokenizerFast

MIN_TRANSFORMERS = "4.45"  # oldest release the export is tested with (keep pyproject in step)
CHAT_ROLES = ("system", "user", "assistant", "end_turn")
TOKENIZER_CLASS = "PreTrainedTokenizerFast"  # a class that transformers 4.x and 5.x both have


def hf_names(cfg: ModelConfig) -> dict[str, dict[str, int]]:
    """Each of our weights to the ``LlamaForCausalLM`` weights it holds and their row counts.

    A fused weight holds several, stacked in this order along dim 0 (Q/K/V, gate/up); a tied
    head is no weight of its own.
    """
    d, q_out, kv_out = cfg.d_model, cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    names = {
        "embed_tokens.weight": {"model.embed_tokens.weight": cfg.vocab_size},
        "norm.weight": {"model.norm.weight": d},
    }
    if not cfg.tie_embeddings:
        names["lm_head.weight"] = {"lm_head.weight": cfg.vocab_size}
    for i in range(cfg.n_layers):
        ours, theirs = f"layers.{i}.", f"model.layers.{i}."
        names |= {
            ours + "attn_norm.weight": {theirs + "input_layernorm.weight": d},
            ours + "mlp_norm.weight": {theirs + "post_attention_layernorm.weight": d},
            ours + "attn.qkv.weight": {
                theirs + "self_attn.q_proj.weight": q_out,
                theirs + "self_attn.k_proj.weight": kv_out,
                theirs + "self_attn.v_proj.weight": kv_out,
            },
            ours + "attn.out.weight": {theirs + "self_attn.o_proj.weight": d},
            ours + "mlp.gate_up.weight": {
                theirs + "mlp.gate_proj.weight": cfg.ffn_hidden,
                theirs + "mlp.up_proj.weight": cfg.ffn_hidden,
            },
            ours + "mlp.down.weight": {theirs + "mlp.down_proj.weight": d},
        }
    return names


def hf_state_dict(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Our parameter names and fused layouts to ``LlamaForCausalLM``'s."""
    out: dict[str, torch.Tensor] = {}
    for ours, theirs in hf_names(cfg).items():
        out.update(zip(theirs, state[ours].split(list(theirs.values()), dim=0), strict=True))
    return {name: t.contiguous() for name, t in out.items()}


def hf_config_dict(cfg: ModelConfig, special_ids: dict[str, int] | None = None) -> dict[str, Any]:
    """``config.json`` for ``LlamaForCausalLM`` in the legacy layout every release reads.

    RoPE is given as top-level ``rope_theta`` and ``rope_scaling`` (null, or a dict with
    ``rope_type`` as 4.45 introduced); transformers 5 converts both to its ``rope_parameters``,
    while 4.x would silently ignore the new key.
    """
    ids = special_ids or {}
    scaling = cfg.rope_scaling.model_dump(exclude_none=True) if cfg.rope_scaling else None
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.ffn_hidden,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": scaling,
        "tie_word_embeddings": cfg.tie_embeddings,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "hidden_act": "silu",
        "initializer_range": cfg.init_std,
        "pretraining_tp": 1,
        "use_cache": True,
        "bos_token_id": ids.get("bos"),
        "eos_token_id": ids.get("eos"),
        "pad_token_id": ids.get("pad"),
        "torch_dtype": "float32",
    }


def hf_config(cfg: ModelConfig, special_ids: dict[str, int] | None = None) -> LlamaConfig:
    """A ``transformers.LlamaConfig`` equal to our architecture."""
    from transformers import LlamaConfig

    return LlamaConfig(**hf_config_dict(cfg, special_ids))


def tokenizer_config_dict(max_seq_len: int) -> dict[str, Any]:
    """``tokenizer_config.json``: the fast tokenizer class, its special tokens, length and
    chat template (``OUR_CHAT_TEMPLATE``: ``apply_chat_template`` gives our renderer's ids).

    Documents are separated by EOS during training and no BOS is prepended, so
    ``tokenizer.json`` has no post-processor and encoding adds no special tokens.
    """
    return {
        "tokenizer_class": TOKENIZER_CLASS,
        "bos_token": SPECIAL_TOKENS["bos"],
        "eos_token": SPECIAL_TOKENS["eos"],
        "pad_token": SPECIAL_TOKENS["pad"],
        "additional_special_tokens": [SPECIAL_TOKENS[role] for role in CHAT_ROLES],
        "model_max_length": max_seq_len,
        "padding_side": "right",
        "clean_up_tokenization_spaces": False,
        "chat_template": OUR_CHAT_TEMPLATE,
    }


def special_tokens_map() -> dict[str, Any]:
    """``special_tokens_map.json``, read by tools that do not parse the tokenizer config."""
    config = tokenizer_config_dict(0)
    keys = ("bos_token", "eos_token", "pad_token", "additional_special_tokens")
    return {key: config[key] for key in keys}


def generation_config_dict(
    special_ids: dict[str, int] | None, sampling: EvalConfig
) -> dict[str, Any]:
    """``generation_config.json``: our sampler's nucleus settings and the special-token ids;
    generation stops at the end of a document and at the end of an assistant turn.

    Like ``evaluation.generate`` in its top-p mode: temperature then top-p, no top-k cut
    (``top_k: 0`` switches off the library's default of 50). Callers wanting greedy
    decoding pass ``do_sample=False``. No ``max_length``: callers set ``max_new_tokens``.
    """
    ids = special_ids or {}
    stops = [ids[role] for role in ("eos", "end_turn") if role in ids]
    return {
        "bos_token_id": ids.get("bos"),
        "eos_token_id": stops if len(stops) > 1 else ids.get("eos"),
        "pad_token_id": ids.get("pad"),
        "do_sample": sampling.temperature > 0,
        "temperature": sampling.temperature if sampling.temperature > 0 else 1.0,
        "top_p": sampling.top_p,
        "top_k": 0,
    }


def export_hf(
    checkpoint_dir: Path,
    out_dir: Path,
    tokenizer_file: Path | None = None,
    index: TokenShardIndex | None = None,
) -> Path:
    """Write the HF folder for a checkpoint (atomically); returns ``out_dir``.

    ``index`` (the token shards trained on) feeds the model card's data table; without it
    the index is looked up in the train config's ``data_dir``, and left out if absent.
    """
    meta = read_checkpoint_meta(checkpoint_dir)
    cfg = ModelConfig.model_validate(meta.model)
    ours = load_file(str(Path(checkpoint_dir) / "model.safetensors"))
    state = hf_state_dict(ours, cfg)
    special_ids = stop_ids = None
    if tokenizer_file is not None:
        ids = special_token_ids(load_tokenizer(tokenizer_file))
        special_ids = {role: ids[role] for role in ("bos", "eos", "pad")}
        stop_ids = special_ids | {"end_turn": ids["end_turn"]}
    index = index or _index_from_train_config(meta)
    sampling = EvalConfig.model_validate(meta.train_config.get("eval", {}))
    n_params = sum(t.numel() for t in ours.values())
    with atomic_dir(Path(out_dir)) as tmp:
        write_json(tmp / "config.json", hf_config_dict(cfg, special_ids))
        write_json(tmp / "generation_config.json", generation_config_dict(stop_ids, sampling))
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        if tokenizer_file is not None:
            write_tokenizer_files(tokenizer_file, tmp, cfg.max_seq_len)
        card = model_card(meta, cfg, n_params, index, sampling)
        (tmp / "README.md").write_text(card, encoding="utf-8")
    return Path(out_dir)


def write_tokenizer_files(tokenizer_file: Path, folder: Path, max_seq_len: int) -> None:
    """``tokenizer.json`` (our tokenizer, unchanged), its config and special-tokens map."""
    (folder / "tokenizer.json").write_text(load_tokenizer(tokenizer_file).to_str(), "utf-8")
    write_json(folder / "tokenizer_config.json", tokenizer_config_dict(max_seq_len))
    write_json(folder / "special_tokens_map.json", special_tokens_map())


def fast_tokenizer(tokenizer_file: Path, max_seq_len: int = 2048) -> PreTrainedTokenizerFast:
    """Our ``tokenizer.json`` as a ``transformers.PreTrainedTokenizerFast`` with its roles."""
    from transformers import PreTrainedTokenizerFast

    config = tokenizer_config_dict(max_seq_len)
    del config["tokenizer_class"]
    return PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_file), **config)


def write_json(path: Path, value: dict[str, Any]) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _index_from_train_config(meta: CheckpointMeta) -> TokenShardIndex | None:
    """The token-shard index next to the run's ``data_dir``, if it is still there (a run of
    another objective, e.g. SFT, has its own kind of data folder)."""
    data_dir = meta.train_config.get("data_dir")
    objective = meta.train_config.get("objective", "next_token")
    if objective != "next_token" or not data_dir or not (Path(data_dir) / INDEX_FILE).is_file():
        return None
    return load_token_index(Path(data_dir))


# --- model card -----------------------------------------------------------------------------


def model_card(
    meta: CheckpointMeta,
    cfg: ModelConfig,
    n_params: int,
    index: TokenShardIndex | None = None,
    sampling: EvalConfig | None = None,
) -> str:
    """The ``README.md`` of the export: front matter, then what the checkpoint knows."""
    sections = [
        _front_matter(),
        _intro(meta, n_params),
        _model_section(cfg, n_params),
        _data_section(meta, index),
        _training_section(meta, index),
        _eval_section(meta.metrics),
        _use_section(),
        _load_section(sampling or EvalConfig()),
    ]
    return "\n\n".join(sections) + "\n"


def _front_matter() -> str:
    tags = ["llmstack", "llama", "causal-lm", "base-model", "research", "from-scratch"]
    lines = ["---", "license: apache-2.0", "library_name: transformers"]
    lines += ["pipeline_tag: text-generation", "tags:"] + [f"  - {tag}" for tag in tags]
    return "\n".join(lines + ["---"])


def _intro(meta: CheckpointMeta, n_params: int) -> str:
    return (
        f"# llmstack base model ({_millions(n_params)} parameters, step {meta.step:,})\n\n"
        "A small decoder-only language model trained from scratch by the llmstack pipeline "
        "(data curation and pretraining as Dagster assets). This card was generated at export "
        "time from the checkpoint's metadata and the index of the token shards it trained on."
    )


def _model_section(cfg: ModelConfig, n_params: int) -> str:
    rows = [
        ("architecture", "Llama-style decoder (`LlamaForCausalLM`): RoPE, SwiGLU, RMSNorm"),
        ("parameters", f"{n_params:,}"),
        ("layers", cfg.n_layers),
        ("hidden size", cfg.d_model),
        ("attention heads (key/value heads)", f"{cfg.n_heads} ({cfg.n_kv_heads})"),
        ("head dimension", cfg.head_dim),
        ("MLP hidden size", cfg.ffn_hidden),
        ("vocabulary", f"{cfg.vocab_size:,} (byte-level BPE)"),
        ("context length", f"{cfg.max_seq_len:,} tokens"),
        ("RoPE theta", f"{cfg.rope_theta:g}"),
        ("tied input/output embeddings", "yes" if cfg.tie_embeddings else "no"),
        ("weights", "float32 safetensors"),
    ]
    return "## Model\n\n" + _table(("field", "value"), rows)


def _data_section(meta: CheckpointMeta, index: TokenShardIndex | None) -> str:
    rows = [
        ("mixture hash", _code(meta.mixture_hash)),
        ("data version (token shards)", _code(meta.data_version)),
        ("tokenizer hash", _code(meta.tokenizer_hash)),
        ("document dates", _date_range(meta.date_min, meta.date_max)),
    ]
    parts = [
        "## Training data",
        "The training mixture is identified by the hash of its input manifest and by the "
        "content version of the token shards built from it; the same values are recorded in "
        "the token-shard index and the pipeline's asset metadata.",
        _table(("field", "value"), rows),
        _temporal_note(meta.date_min, meta.date_max),
    ]
    if index is not None and index.domains:
        parts += ["Tokens per domain (train and held-out validation split):", _domain_table(index)]
    return "\n\n".join(parts)


def _temporal_note(date_min: datetime | None, date_max: datetime | None) -> str:
    if date_max is None:
        return (
            "**Temporal coverage.** The documents carried no creation dates, so the period the "
            "model knows about is unknown."
        )
    return (
        f"**Temporal coverage.** The newest training document is from {date_max:%Y-%m-%d}. "
        "Text drifts in topics, names and facts, and a model does worse on evaluation data "
        "written long after its training data: Longpre et al. (2023) found downstream scores "
        "fall by roughly 0.4 points for every year between the two. Compare this model on "
        "data from the same period, and expect lower scores on later text."
    )


def _domain_table(index: TokenShardIndex) -> str:
    total = sum(stats.train_tokens for stats in index.domains.values()) or 1
    rows = [
        (
            domain,
            f"{stats.train_docs:,}",
            f"{stats.train_tokens:,}",
            f"{stats.train_tokens / total:.1%}",
            f"{stats.val_docs:,}",
            f"{stats.val_tokens:,}",
        )
        for domain, stats in sorted(index.domains.items())
    ]
    header = ("domain", "train docs", "train tokens", "share", "val docs", "val tokens")
    return _table(header, rows)


def _training_section(meta: CheckpointMeta, index: TokenShardIndex | None) -> str:
    train = meta.train_config
    optim = train.get("optim", {})
    per_step = meta.tokens_seen // meta.step if meta.step else None
    rows = [
        ("optimizer steps", f"{meta.step:,}"),
        ("tokens seen", f"{meta.tokens_seen:,}"),
        ("passes over the training tokens", _epochs(meta.tokens_seen, index)),
        ("tokens per step", _number(per_step)),
        ("sequence length", _number(train.get("seq_len"))),
        ("micro batch x gradient accumulation", _batch(train)),
        ("optimizer", _optimizer(optim)),
        ("precision", train.get("dtype", "–")),
        ("parallelism", train.get("parallelism", "–")),
        ("seed", train.get("seed", "–")),
        ("model preset", _code(train.get("preset"))),
        ("code version", _code(meta.code_version)),
        ("checkpoint written", f"{meta.created_at:%Y-%m-%d %H:%M} UTC"),
    ]
    return "## Training\n\n" + _table(("field", "value"), rows)


def _eval_section(metrics: dict[str, float]) -> str:
    domains = sorted(
        {key.split("/")[1] for key in metrics if key.startswith("val/") and key.count("/") == 2}
    )
    text = (
        "## Evaluation\n\nLoss on the held-out validation split of each domain at this "
        "checkpoint, in nats per token and in bits per UTF-8 byte of validation text (which "
        "does not depend on the tokenizer, so it compares across models). Lower is better. "
        "No downstream benchmarks were run at export; see below for lm-evaluation-harness."
    )
    if not domains and "val/loss" not in metrics:
        return text + "\n\nNo validation metrics were recorded for this checkpoint."
    rows = [
        (d, _metric(metrics.get(f"val/{d}/loss")), _metric(metrics.get(f"val/{d}/bpb")))
        for d in domains
    ]
    if "val/loss" in metrics:
        rows.append(("**all (token-weighted)**", _metric(metrics["val/loss"]), "–"))
    table = _table(("domain", "loss (nats/token)", "bits per byte"), rows)
    extra = ""
    if "train/loss" in metrics:
        extra = f"\n\nLast logged training loss: {metrics['train/loss']:.4f}."
    return f"{text}\n\n{table}{extra}"


def _use_section() -> str:
    return (
        "## Intended use and limitations\n\n"
        "- A small research base model: for studying data curation, mixtures and training "
        "dynamics, and for testing evaluation and serving code end to end.\n"
        "- It only continues text. It is not instruction-tuned or aligned; the chat-role "
        "tokens (`<|system|>`, `<|user|>`, `<|assistant|>`, `<|end_turn|>`) are reserved in "
        "the vocabulary but untrained.\n"
        "- Not for deployment or any user-facing product: its output is often wrong, "
        "repetitive or incoherent, and it may reproduce biases or text from its training data.\n"
        "- Knowledge is limited to its training documents and their period (see above)."
    )


def _load_section(sampling: EvalConfig) -> str:
    code = (
        "```python\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        'tokenizer = AutoTokenizer.from_pretrained("path/to/hf")\n'
        'model = AutoModelForCausalLM.from_pretrained("path/to/hf")\n'
        'ids = tokenizer("The history of", return_tensors="pt").input_ids\n'
        "out = model.generate(ids, max_new_tokens=40)  # sampling per generation_config.json\n"
        "print(tokenizer.decode(out[0][ids.shape[1]:]))\n"
        "```"
    )
    return (
        f"## How to load\n\nWorks with transformers {MIN_TRANSFORMERS} or newer, including 5.x "
        f"(the tokenizer is a plain `{TOKENIZER_CLASS}`).\n\n{code}\n\n"
        f"`generation_config.json` samples with temperature {sampling.temperature:g} and "
        f"top-p {sampling.top_p:g} (no top-k), as the training-time samples did; pass "
        "`do_sample=False` for greedy decoding. Encoding adds no BOS token; documents were "
        "separated by `<|eos|>` in training.\n\n"
        "lm-evaluation-harness: `lm_eval --model hf --model_args pretrained=path/to/hf "
        "--tasks hellaswag`."
    )


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _code(value: str | None) -> str:
    return f"`{value}`" if value else "unknown"


def _number(value: int | None) -> str:
    return f"{value:,}" if value is not None else "–"


def _metric(value: float | None) -> str:
    return f"{value:.4f}" if value is not None else "–"


def _millions(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def _date_range(date_min: datetime | None, date_max: datetime | None) -> str:
    if date_min is None or date_max is None:
        return "unknown"
    return f"{date_min:%Y-%m-%d} to {date_max:%Y-%m-%d}"


def _epochs(tokens_seen: int, index: TokenShardIndex | None) -> str:
    train_tokens = sum(s.train_tokens for s in index.domains.values()) if index else 0
    return f"{tokens_seen / train_tokens:.3g}" if train_tokens else "–"


def _batch(train: dict[str, Any]) -> str:
    micro, accum = train.get("micro_batch_size"), train.get("grad_accum_steps")
    return f"{micro} x {accum} per rank" if micro and accum else "–"


def _optimizer(optim: dict[str, Any]) -> str:
    if not optim:
        return "AdamW"
    betas = ", ".join(f"{b:g}" for b in optim.get("betas", ()))
    return (
        f"AdamW, peak lr {optim.get('lr', 0):g} (warmup {optim.get('warmup_steps', 0)} steps, "
        f"cosine to {optim.get('min_lr_ratio', 0):g}x), weight decay "
        f"{optim.get('weight_decay', 0):g}, betas ({betas}), grad clip {optim.get('grad_clip')}"
    )
