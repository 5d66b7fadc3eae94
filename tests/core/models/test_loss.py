import pytest
import torch
import torch.nn.functional as F

from llmstack_dagster.core.models.loss import linear_cross_entropy


@pytest.mark.parametrize("chunk", [3, 16, 64])
def test_matches_cross_entropy_of_full_logits_and_its_gradients(chunk: int) -> None:
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(37, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(23, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 23, (37,), generator=gen)
    ref = F.cross_entropy(hidden @ weight.T, targets)
    ref_grads = torch.autograd.grad(3.0 * ref, (hidden, weight))
    loss = linear_cross_entropy(hidden, weight, targets, chunk=chunk)
    grads = torch.autograd.grad(3.0 * loss, (hidden, weight))
    torch.testing.assert_close(loss, ref)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want)


def test_model_training_loss_equals_loss_from_logits() -> None:
    from llmstack_dagster.core.models.config import ModelConfig
    from llmstack_dagster.core.models.llama import LlamaLM

    cfg = ModelConfig(
        vocab_size=61,
        d_model=16,
        n_layers=1,
        n_heads=2,
        n_kv_heads=1,
        ffn_hidden=32,
        max_seq_len=16,
    )
    torch.manual_seed(0)
    model = LlamaLM(cfg)
    idx, targets = torch.randint(0, 61, (2, 9)), torch.randint(0, 61, (2, 9))
    loss = model(idx, targets)
    loss.backward()
    fused_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ref = F.cross_entropy(model(idx).flatten(0, 1), targets.flatten())
    ref.backward()
    torch.testing.assert_close(loss, ref)
    for p, got in zip(model.parameters(), fused_grads, strict=True):
        torch.testing.assert_close(got, p.grad)


@pytest.mark.parametrize("chunk", [3, 64])
def test_sum_skips_ignored_targets_and_is_zero_without_any(chunk: int) -> None:
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(37, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(23, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 23, (37,), generator=gen)
    targets[::3] = -100
    ref = F.cross_entropy(hidden @ weight.T, targets, reduction="sum")
    loss = linear_cross_entropy(hidden, weight, targets, chunk=chunk, reduction="sum")
    torch.testing.assert_close(loss, ref)
    for got, want in zip(
        torch.autograd.grad(2.0 * loss, (hidden, weight)),
        torch.autograd.grad(2.0 * ref, (hidden, weight)),
        strict=True,
    ):
        torch.testing.assert_close(got, want)
    none = linear_cross_entropy(hidden, weight, torch.full_like(targets, -100), reduction="sum")
    assert none == 0
    assert all(g.abs().sum() == 0 for g in torch.autograd.grad(none, (hidden, weight)))
