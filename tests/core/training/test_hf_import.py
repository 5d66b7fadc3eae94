import hashlib
import json
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from support.hf_models import CHAT_TEMPLATE, tiny_hf_config, write_hf_model

from llmstack_dagster.core.models.config import RopeScaling
from llmstack_dagster.core.models.generation import generate_batch
from llmstack_dagster.core.models.llama import LlamaLM
from llmstack_dagster.core.training.hf_export import fast_tokenizer
from llmstack_dagster.core.training.hf_import import (
    SMOLLM2_DIR_ENV,
    SMOLLM2_FILE,
    ImportedModel,
    export_weights_folder,
    import_hf,
    load_weights_folder,
    model_config_from_hf,
    smollm2_gguf,
)

LLAMA3 = {
    "rope_type": "llama3",
    "rope_theta": 5000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}
LLAMA3_SCALING = {k: v for k, v in LLAMA3.items() if k != "rope_theta"}
VARIANTS: dict[str, dict[str, Any]] = {
    "gqa-untied": {},
    "tied": {"tie_word_embeddings": True},
    "llama3-rope": {"rope_parameters": LLAMA3, "max_position_embeddings": 128},
    "linear-rope": {"rope_parameters": {"rope_type": "linear", "rope_theta": 5e3, "factor": 2.0}},
}


def our_model(imported: ImportedModel) -> LlamaLM:
    cfg, state = load_weights_folder(imported.path)
    assert cfg == imported.config
    model = LlamaLM(cfg).eval()
    model.load_state_dict(state)
    return model


def max_logit_diff(ours: LlamaLM, hf: Any, idx: torch.Tensor) -> float:
    with torch.no_grad():
        return (ours(idx) - hf(idx).logits).abs().max().item()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_imported_model_matches_transformers_logits(tmp_path, tokenizer_file, variant) -> None:
    hf = write_hf_model(tmp_path / "hf", tokenizer_file, **VARIANTS[variant])
    imported = import_hf(tmp_path / "hf", tmp_path / "ours")
    cfg = imported.config
    assert (cfg.n_heads, cfg.n_kv_heads, cfg.rope_theta, cfg.norm_eps) == (4, 2, 5000.0, 1e-6)
    assert cfg.tie_embeddings is (variant == "tied")
    if variant == "llama3-rope":
        assert cfg.rope_scaling == RopeScaling(**LLAMA3_SCALING)
    assert imported.chat_template == CHAT_TEMPLATE
    assert imported.eos_id == fast_tokenizer(tokenizer_file).eos_token_id
    weights = imported.path / "model.safetensors"
    assert ("lm_head.weight" in load_file(str(weights))) is not cfg.tie_embeddings
    assert imported.weights_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    source = json.loads((imported.path / "source.json").read_text())
    assert source == {
        "source": str((tmp_path / "hf").resolve()),
        "gguf_file": None,
        "weights_sha256": imported.weights_sha256,
    }
    tok_config = json.loads((imported.path / "tokenizer_config.json").read_text())
    assert tok_config["chat_template"] == CHAT_TEMPLATE and tok_config["eos_token"] == "<|eos|>"
    idx = torch.randint(0, cfg.vocab_size, (2, 60), generator=torch.Generator().manual_seed(1))
    assert max_logit_diff(our_model(imported), hf, idx) <= 1e-4


@pytest.mark.parametrize("variant", ["tied", "llama3-rope"])
def test_import_export_import_is_exact(tmp_path, tokenizer_file, variant) -> None:
    from transformers import AutoTokenizer

    write_hf_model(tmp_path / "hf", tokenizer_file, **VARIANTS[variant])
    first = import_hf(tmp_path / "hf", tmp_path / "first")
    exported = export_weights_folder(first.path, tmp_path / "export")
    config = json.loads((exported / "config.json").read_text())
    assert config["rope_theta"] == 5000.0
    assert config["rope_scaling"] == (LLAMA3_SCALING if variant == "llama3-rope" else None)
    assert AutoTokenizer.from_pretrained(exported).chat_template == CHAT_TEMPLATE
    second = import_hf(exported, tmp_path / "second")
    assert second.config == first.config
    assert second.weights_sha256 == first.weights_sha256
    a, b = load_weights_folder(first.path)[1], load_weights_folder(second.path)[1]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (first.path / name).read_text() == (second.path / name).read_text()


def test_non_llama_architectures_are_refused(tmp_path) -> None:
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=32, n_head=2).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(ValueError, match="only Llama models can be imported, not 'gpt2'"):
        import_hf(tmp_path / "gpt2", tmp_path / "ours")
    assert not (tmp_path / "ours").exists()


@pytest.mark.parametrize("flag", ["attention_bias", "mlp_bias"])
def test_biases_are_refused_before_loading_weights(tmp_path, flag) -> None:
    tiny_hf_config(**{flag: True}).save_pretrained(tmp_path / "hf")  # no weights at all
    with pytest.raises(ValueError, match=f"{flag}=True is unsupported"):
        import_hf(tmp_path / "hf", tmp_path / "ours")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"head_dim": 32}, "head_dim 32 is unsupported"),
        ({"rope_parameters": {"rope_type": "yarn", "factor": 2.0}}, "RoPE type 'yarn'"),
        ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
    ],
)
def test_unsupported_configs_are_refused(overrides, message) -> None:
    with pytest.raises(ValueError, match=message):
        model_config_from_hf(tiny_hf_config(**overrides))


def test_transformers_4_rope_attributes_are_read() -> None:
    fields = tiny_hf_config().to_dict()
    del fields["rope_parameters"]  # 4.x has top-level rope_theta and rope_scaling instead
    scaling = {"type": "linear", "factor": 4.0}  # "type": the key before 4.45's "rope_type"
    cfg = model_config_from_hf(SimpleNamespace(**fields, rope_theta=321.0, rope_scaling=scaling))
    assert cfg.rope_theta == 321.0
    assert cfg.rope_scaling == RopeScaling(rope_type="linear", factor=4.0)


def test_smollm2_gguf_is_looked_up_in_the_cache_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(SMOLLM2_DIR_ENV, str(tmp_path))
    assert smollm2_gguf() is None
    (tmp_path / SMOLLM2_FILE).write_bytes(b"GGUF")
    assert smollm2_gguf() == tmp_path / SMOLLM2_FILE


# --- SmolLM2-135M-Instruct, a real Llama (scripts/fetch_smollm2.sh) -------------------------
# The Q4_1 GGUF is dequantized to float32 by transformers, so both sides run the same floats.


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory) -> tuple[ImportedModel, LlamaLM, Any, Any, list[int]]:
    """The import (once per session), transformers' own load, our tokenizer, a chat prompt."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("SmolLM2 GGUF not cached; run scripts/fetch_smollm2.sh")
    imported = import_hf(gguf.parent, tmp_path_factory.mktemp("smollm2") / "weights", gguf.name)
    hf = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(imported.path)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prompt = tokenizer(text, add_special_tokens=False).input_ids
    return imported, our_model(imported), hf, tokenizer, prompt


@pytest.mark.slow
def test_smollm2_logits_match_transformers(smollm2) -> None:
    imported, ours, hf, _, prompt = smollm2
    assert imported.config.model_dump(include={"n_layers", "d_model", "n_kv_heads"}) == {
        "n_layers": 30,
        "d_model": 576,
        "n_kv_heads": 3,
    }
    assert imported.config.tie_embeddings and imported.chat_template is not None
    assert max_logit_diff(ours, hf, torch.tensor([prompt])) <= 1e-4


@pytest.mark.slow
def test_smollm2_greedy_generation_matches_transformers(smollm2) -> None:
    imported, ours, hf, tokenizer, prompt = smollm2
    (new,) = generate_batch(ours, [prompt], 12, stop_ids={imported.eos_id})
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = hf.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False
        )
    theirs = out[0, len(prompt) :].tolist()
    if theirs[-1] == imported.eos_id:  # transformers keeps the EOS it stopped at
        theirs.pop()
    assert new == theirs
    assert "Paris" in tokenizer.decode(new)  # the dequantized weights still make sense
