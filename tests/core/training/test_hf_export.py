from pathlib import Path

import pytest
import torch

from llmstack_dagster.core.models.config import ModelConfig
from llmstack_dagster.core.models.llama import LlamaLM
from llmstack_dagster.core.training.checkpoint import CheckpointMeta, TrainerState, save_checkpoint
from llmstack_dagster.core.training.data_loader import LoaderPosition
from llmstack_dagster.core.training.hf_export import export_hf


def write_checkpoint(out_dir: Path, cfg: ModelConfig) -> tuple[LlamaLM, Path]:
    torch.manual_seed(0)
    model = LlamaLM(cfg)
    with torch.no_grad():  # non-trivial norm weights so their mapping is checked too
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    optimizer = torch.optim.AdamW(model.parameters())
    path = save_checkpoint(
        out_dir,
        model.state_dict(),
        optimizer.state_dict() | {"state": {}},
        TrainerState(step=1, loader=LoaderPosition(), param_groups=[]),
        CheckpointMeta(
            step=1, tokens_seen=0, model=cfg.model_dump(), train_config={}, code_version="test"
        ),
    )
    return model, path


@pytest.mark.parametrize("tied", [True, False])
def test_transformers_loads_export_with_matching_logits(tmp_path, tokenizer_file, tied) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = ModelConfig(
        vocab_size=512,
        d_model=64,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        ffn_hidden=160,
        max_seq_len=64,
        tie_embeddings=tied,
        rope_theta=500.0,
    )
    model, ckpt = write_checkpoint(tmp_path / "run", cfg)
    hf_dir = export_hf(ckpt, tmp_path / "hf", tokenizer_file)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in hf_dir.iterdir()
    }
    hf = AutoModelForCausalLM.from_pretrained(hf_dir, torch_dtype=torch.float32).eval()
    assert hf.config.tie_word_embeddings is tied
    idx = torch.randint(0, cfg.vocab_size, (2, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(idx), hf(idx).logits
    assert (ours - theirs).abs().max().item() <= 1e-4
    tok = AutoTokenizer.from_pretrained(hf_dir)
    assert tok.eos_token == "<|eos|>" and tok.pad_token == "<|pad|>"
    assert hf.config.eos_token_id == tok.eos_token_id
