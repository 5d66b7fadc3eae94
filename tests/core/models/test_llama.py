import math

import torch

from llmstack_dagster.core.models.config import ModelConfig
from llmstack_dagster.core.models.llama import LlamaLM
from llmstack_dagster.core.models.rope import apply_rope, rope_tables

CFG = ModelConfig(
    vocab_size=97, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden=64, max_seq_len=64
)


def test_shapes_and_loss_reductions() -> None:
    torch.manual_seed(0)
    model = LlamaLM(CFG)
    idx = torch.randint(0, CFG.vocab_size, (3, 10))
    assert model(idx).shape == (3, 10, CFG.vocab_size)
    per_token = model(idx, idx, reduction="none")
    assert per_token.shape == (3, 10)
    torch.testing.assert_close(per_token.mean(), model(idx, idx))
    # an untrained model predicts random targets at about ln(vocab) nats
    targets = torch.randint(0, CFG.vocab_size, (3, 10))
    assert abs(float(model(idx, targets)) - math.log(CFG.vocab_size)) < 0.3


def test_attention_is_causal() -> None:
    torch.manual_seed(0)
    model = LlamaLM(CFG)
    idx = torch.randint(0, CFG.vocab_size, (1, 12))
    changed = idx.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % CFG.vocab_size
    a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :8], b[:, :8])
    assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_tied_and_untied_heads() -> None:
    tied = LlamaLM(CFG)
    assert tied.lm_head.weight is tied.embed_tokens.weight
    untied = LlamaLM(CFG.model_copy(update={"tie_embeddings": False}))
    assert untied.lm_head.weight is not untied.embed_tokens.weight


def test_seeded_init_is_deterministic() -> None:
    torch.manual_seed(3)
    a = LlamaLM(CFG).state_dict()
    torch.manual_seed(3)
    b = LlamaLM(CFG).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_rope_rotates_pairs_by_position_angle() -> None:
    head_dim, theta = 8, 10000.0
    cos, sin = rope_tables(head_dim, 16, theta)
    x = torch.randn(1, 1, 16, head_dim)
    out = apply_rope(x, cos, sin)
    # pair i is (x[i], x[i + Q/2]) rotated by pos * theta^(-2i/Q); check with complex numbers
    half = head_dim // 2
    pos = torch.arange(16, dtype=torch.float64)[:, None]
    angle = pos * theta ** (-torch.arange(half, dtype=torch.float64) * 2 / head_dim)
    z = torch.complex(x[..., :half].double(), x[..., half:].double()) * torch.polar(
        torch.ones_like(angle), angle
    )
    torch.testing.assert_close(out[..., :half].double(), z.real, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[..., half:].double(), z.imag, atol=1e-5, rtol=0)
    # norms are preserved and relative positions matter only through their difference
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))
