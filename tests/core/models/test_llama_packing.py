import torch

from llmstack_dagster.core.models.config import ModelConfig
from llmstack_dagster.core.models.llama import LlamaLM, segment_mask

CFG = ModelConfig(
    vocab_size=97, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden=64, max_seq_len=64
)
LENGTHS = (7, 11, 5)  # packed into one row of 26 tokens, then 6 of padding


def packed_row(convs: list[torch.Tensor], seq: int) -> dict[str, torch.Tensor]:
    """One packed row (batch of 1): next-token targets within each conversation only."""
    ids = torch.zeros(seq, dtype=torch.long)
    segments, positions = torch.zeros_like(ids), torch.zeros_like(ids)
    targets = torch.full_like(ids, -100)
    at = 0
    for k, conv in enumerate(convs, start=1):
        n = len(conv)
        ids[at : at + n], segments[at : at + n] = conv, k
        positions[at : at + n], targets[at : at + n - 1] = torch.arange(n), conv[1:]
        at += n
    positions[at:] = torch.arange(seq - at)
    return {
        "input_ids": ids[None],
        "targets": targets[None],
        "position_ids": positions[None],
        "segment_ids": segments[None],
    }


def setup() -> tuple[LlamaLM, list[torch.Tensor], dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = LlamaLM(CFG)
    convs = [torch.randint(0, CFG.vocab_size, (n,)) for n in LENGTHS]
    return model, convs, packed_row(convs, 32)


def run(model: LlamaLM, row: dict[str, torch.Tensor], **kw: object) -> torch.Tensor:
    return model(
        row["input_ids"], position_ids=row["position_ids"], segment_ids=row["segment_ids"], **kw
    )


def test_packed_row_matches_each_conversation_alone() -> None:
    model, convs, row = setup()
    packed_logits = run(model, row)[0]
    packed_losses = run(model, row, targets=row["targets"], reduction="none")[0]
    at = 0
    for conv in convs:
        n = len(conv)
        alone = model(conv[None])[0]
        torch.testing.assert_close(packed_logits[at : at + n], alone, atol=1e-5, rtol=1e-5)
        losses = model(conv[None, :-1], conv[None, 1:], reduction="none")[0]
        torch.testing.assert_close(packed_losses[at : at + n - 1], losses, atol=1e-5, rtol=1e-5)
        assert packed_losses[at + n - 1] == 0  # the boundary target is ignored
        at += n


def test_attention_never_crosses_segments() -> None:
    model, convs, row = setup()
    changed = {**row, "input_ids": row["input_ids"].clone()}
    changed["input_ids"][0, : LENGTHS[0]] = (changed["input_ids"][0, : LENGTHS[0]] + 1) % 97
    a, b = run(model, row)[0], run(model, changed)[0]
    first, second = slice(0, LENGTHS[0]), slice(LENGTHS[0], LENGTHS[0] + LENGTHS[1])
    assert torch.equal(a[second], b[second])
    assert not torch.allclose(a[first], b[first])


def test_mask_is_causal_within_segments_and_padding_attends_to_itself() -> None:
    mask = segment_mask(torch.tensor([[1, 1, 2, 2, 0]]))[0, 0]
    expected = torch.tensor(
        [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 1]]
    )
    assert torch.equal(mask, expected.bool())


def test_summed_training_loss_and_gradients_match_full_logits() -> None:
    model, _, row = setup()
    loss = run(model, row, targets=row["targets"], reduction="sum")
    loss.backward()
    fused = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    logits = run(model, row)
    ref = torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), row["targets"].flatten(), reduction="sum"
    )
    ref.backward()
    torch.testing.assert_close(loss, ref)
    for p, got in zip(model.parameters(), fused, strict=True):
        torch.testing.assert_close(got, p.grad)
    with torch.no_grad():
        torch.testing.assert_close(run(model, row, targets=row["targets"], reduction="sum"), ref)
