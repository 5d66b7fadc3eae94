import math

import torch

from llmstack_dagster.core.models.config import ModelConfig
from llmstack_dagster.core.models.llama import LlamaLM
from llmstack_dagster.core.training.config import EvalConfig
from llmstack_dagster.core.training.evaluation import (
    evaluate_domains,
    generations_markdown,
    sample_generations,
)
from llmstack_dagster.core.training.token_shards import load_token_index
from llmstack_dagster.core.training.tokenizer import load_tokenizer

CFG = ModelConfig(
    vocab_size=512, d_model=32, n_layers=1, n_heads=2, n_kv_heads=2, ffn_hidden=64, max_seq_len=64
)


def test_val_loss_and_bits_per_byte_per_domain(token_data) -> None:
    torch.manual_seed(0)
    model = LlamaLM(CFG)
    index = load_token_index(token_data)
    out = evaluate_domains(model, token_data, index, 32, 4, 2, torch.device("cpu"))
    for domain, stats in index.domains.items():
        loss = out[f"val/{domain}/loss"]
        assert abs(loss - math.log(512)) < 0.5
        expected_bpb = loss * stats.val_tokens / stats.val_text_bytes / math.log(2)
        assert math.isclose(out[f"val/{domain}/bpb"], expected_bpb)
    losses = [out[f"val/{d}/loss"] for d in index.domains]
    assert min(losses) <= out["val/loss"] <= max(losses)


def test_sample_generations_markdown(token_data) -> None:
    model = LlamaLM(CFG)
    tok = load_tokenizer(token_data / "tokenizer.json")
    cfg = EvalConfig(prompts=["To be", "def f|"], max_new_tokens=5)
    samples = sample_generations(model, tok, cfg, eos_id=1, seed=0)
    assert [s["prompt"] for s in samples] == ["To be", "def f|"]
    md = generations_markdown(samples, 0.9)
    assert md.splitlines()[0] == "| prompt | greedy | top-p 0.9 |"
    assert "def f\\|" in md and len(md.splitlines()) == 4
