import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import torch
from support.checkpoints import SMALL, write_checkpoint

from llmstack_dagster.core.training.hf_export import export_hf
from llmstack_dagster.core.training.token_shards import DomainStats, TokenShardIndex
from llmstack_dagster.core.training.tokenizer import SPECIAL_TOKENS, load_tokenizer

METRICS = {
    "val/news/loss": 3.5,
    "val/news/bpb": 1.25,
    "val/code/loss": 2.25,
    "val/code/bpb": 0.875,
    "val/loss": 3.0,
    "train/loss": 2.9,
}


def shard_index() -> TokenShardIndex:
    return TokenShardIndex(
        dtype="uint16",
        vocab_size=512,
        eos_id=1,
        tokenizer_hash="tokhash",
        mixture_hash="mixhash",
        domains={
            "news": DomainStats(train_docs=30, train_tokens=7500, val_docs=3, val_tokens=700),
            "code": DomainStats(train_docs=10, train_tokens=2500, val_docs=1, val_tokens=200),
        },
    )


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


@pytest.mark.parametrize("tied", [True, False])
def test_transformers_loads_export_with_matching_logits(tmp_path, tokenizer_file, tied) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = SMALL.model_copy(update={"tie_embeddings": tied})
    model, ckpt = write_checkpoint(tmp_path / "run", cfg)
    hf_dir = export_hf(ckpt, tmp_path / "hf", tokenizer_file)
    assert {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "README.md",
    } <= {p.name for p in hf_dir.iterdir()}
    hf = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    assert hf.config.tie_word_embeddings is tied
    idx = torch.randint(0, cfg.vocab_size, (2, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(idx), hf(idx).logits
    assert (ours - theirs).abs().max().item() <= 1e-4
    tok = AutoTokenizer.from_pretrained(hf_dir)
    assert tok.eos_token == "<|eos|>" and tok.pad_token == "<|pad|>"
    assert hf.config.eos_token_id == tok.eos_token_id


def test_json_files_use_forms_transformers_4_and_5_both_read(tmp_path, tokenizer_file) -> None:
    _, ckpt = write_checkpoint(tmp_path / "run", SMALL, train_config={"eval": {"top_p": 0.8}})
    hf_dir = export_hf(ckpt, tmp_path / "hf", tokenizer_file)
    ids = {
        role: load_tokenizer(tokenizer_file).token_to_id(t) for role, t in SPECIAL_TOKENS.items()
    }
    config = read_json(hf_dir / "config.json")
    assert config["rope_theta"] == 500.0 and "rope_parameters" not in config
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (config["eos_token_id"], config["pad_token_id"]) == (ids["eos"], ids["pad"])
    tok_config = read_json(hf_dir / "tokenizer_config.json")
    assert tok_config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert tok_config["model_max_length"] == SMALL.max_seq_len
    assert tok_config["additional_special_tokens"] == [
        SPECIAL_TOKENS[r] for r in ("system", "user", "assistant", "end_turn")
    ]
    generation = read_json(hf_dir / "generation_config.json")
    assert generation == {
        "bos_token_id": ids["bos"],
        "eos_token_id": [ids["eos"], ids["end_turn"]],  # a document's end, a turn's end
        "pad_token_id": ids["pad"],
        "do_sample": True,
        "temperature": 0.8,
        "top_p": 0.8,
        "top_k": 0,
    }
    assert load_tokenizer(hf_dir).to_str() == load_tokenizer(tokenizer_file).to_str()


def test_tokenizer_and_generation_config_load_in_transformers_5(tmp_path, tokenizer_file) -> None:
    from transformers import AutoModelForCausalLM, GenerationConfig, PreTrainedTokenizerFast

    _, ckpt = write_checkpoint(tmp_path / "run", SMALL)
    hf_dir = export_hf(ckpt, tmp_path / "hf", tokenizer_file)
    tok = PreTrainedTokenizerFast.from_pretrained(hf_dir)
    text = "<|user|>Ophelia, 2024: x = [1, 2]  # ünï ✓<|end_turn|>"
    ids = tok(text).input_ids
    assert ids == load_tokenizer(tokenizer_file).encode(text).ids
    assert tok.decode(ids) == text
    assert tok.model_max_length == SMALL.max_seq_len
    assert "<|assistant|>" in tok.all_special_tokens
    generation = GenerationConfig.from_pretrained(hf_dir)
    end_turn = tok.convert_tokens_to_ids("<|end_turn|>")
    assert generation.eos_token_id == [tok.eos_token_id, end_turn] and generation.do_sample
    hf = AutoModelForCausalLM.from_pretrained(hf_dir)
    assert hf.generation_config.pad_token_id == tok.pad_token_id
    out = hf.generate(torch.tensor([ids[:4]]), max_new_tokens=3, do_sample=False)
    assert out.shape[1] <= 7


def test_model_card_reports_data_training_and_evaluation(tmp_path, tokenizer_file) -> None:
    _, ckpt = write_checkpoint(
        tmp_path / "run",
        SMALL,
        step=20,
        tokens_seen=20_000,
        train_config={"seq_len": 64, "micro_batch_size": 4, "grad_accum_steps": 2},
        date_min=datetime(2023, 2, 1, tzinfo=UTC),
        date_max=datetime(2024, 3, 31, tzinfo=UTC),
        mixture_hash="mixhash",
        tokenizer_hash="tokhash",
        data_version="v-abc",
        metrics=METRICS,
    )
    card = (
        export_hf(ckpt, tmp_path / "hf", tokenizer_file, shard_index()) / "README.md"
    ).read_text()
    front, body = card.split("---\n", 2)[1:]
    assert "license: apache-2.0" in front and "library_name: transformers" in front
    for heading in ("Model", "Training data", "Training", "Evaluation", "Intended use"):
        assert f"\n## {heading}" in body
    assert "`mixhash`" in body and "`v-abc`" in body and "`tokhash`" in body
    assert "2023-02-01 to 2024-03-31" in body and "0.4 points" in body
    assert "| news | 30 | 7,500 | 75.0% | 3 | 700 |" in body
    assert "| tokens seen | 20,000 |" in body and "| passes over the training tokens | 2 |" in body
    assert "| code | 2.2500 | 0.8750 |" in body and "| news | 3.5000 | 1.2500 |" in body
    assert "not instruction-tuned" in body and "Not for deployment" in body


def test_model_card_without_index_or_metrics(tmp_path) -> None:
    _, ckpt = write_checkpoint(tmp_path / "run", SMALL)
    card = (export_hf(ckpt, tmp_path / "hf") / "README.md").read_text()
    assert "No validation metrics were recorded" in card
    assert "| mixture hash | unknown |" in card and "no creation dates" in card
    assert "train docs" not in card


def test_index_is_found_through_the_train_configs_data_dir(tmp_path) -> None:
    data_dir = tmp_path / "tokens"
    data_dir.mkdir()
    (data_dir / "index.json").write_text(shard_index().model_dump_json())
    _, ckpt = write_checkpoint(tmp_path / "run", SMALL, train_config={"data_dir": str(data_dir)})
    card = (export_hf(ckpt, tmp_path / "hf") / "README.md").read_text()
    assert "| code | 10 | 2,500 | 25.0% | 1 | 200 |" in card
