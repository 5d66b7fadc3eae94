from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from support.sft_data import write_sft_dataset

from llmstack_dagster.core.chat.sft_index import load_sft_index
from llmstack_dagster.core.models.config import ModelConfig
from llmstack_dagster.core.models.llama import LlamaLM
from llmstack_dagster.core.training.data_loader import Batch
from llmstack_dagster.core.training.objectives import MaskedNextToken
from llmstack_dagster.core.training.sft_data import SFTBatches, SFTConversations

CFG = ModelConfig(
    vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden=64, max_seq_len=32
)
SEQ = 16


def rows(n: int = 40) -> list[tuple[list[int], list[int]]]:
    gen = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        prompt, answer = (int(torch.randint(1, 6, (), generator=gen)) for _ in range(2))
        ids = torch.randint(4, 60, (prompt + answer,), generator=gen).tolist() + [2]
        out.append((ids, [0] * prompt + [1] * (answer + 1)))
    return out


def conversations(tokenizer_file: Path, folder: Path) -> SFTConversations:
    data = write_sft_dataset(folder, tokenizer_file, rows(), rows(2), pad_id=3, eos_id=2)
    return SFTConversations(data, load_sft_index(data))


def model() -> LlamaLM:
    torch.manual_seed(0)
    return LlamaLM(CFG)


def train_step(
    net: torch.nn.Module, micro: list[Batch]
) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """What the engine's ``_train_step`` does up to the optimizer: gradients and metric sums."""
    objective = MaskedNextToken()
    denominator = objective.step_denominator(micro)
    sums: dict[str, torch.Tensor] = {}
    for batch in micro:
        loss, metrics = objective.loss(net, batch, denominator)
        loss.backward()
        for name, value in metrics.items():
            sums[name] = sums[name] + value if name in sums else value
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad(set_to_none=True)
    return grads, sums


def reference_loss(net: LlamaLM, micro: list[Batch]) -> torch.Tensor:
    """The token mean of the whole step from full logits, one conversation row at a time."""
    with torch.no_grad():
        losses = [
            net(
                b["input_ids"],
                b["targets"],
                reduction="none",
                position_ids=b["position_ids"],
                segment_ids=b["segment_ids"],
            )[b["targets"] != -100]
            for b in micro
        ]
    return torch.cat(losses).mean()


def test_accumulation_split_gives_the_same_gradients(tokenizer_file, tmp_path) -> None:
    convs = conversations(tokenizer_file, tmp_path / "sft")
    net = model()
    one = SFTBatches(convs, SEQ, micro_batch=8, accum_steps=1, seed=0).next_step()
    four = SFTBatches(convs, SEQ, micro_batch=2, accum_steps=4, seed=0).next_step()
    grads_one, metrics_one = train_step(net, one)
    grads_four, metrics_four = train_step(net, four)
    for a, b in zip(grads_one, grads_four, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(metrics_one["loss"], metrics_four["loss"])
    torch.testing.assert_close(metrics_four["loss"], reference_loss(net, four))
    trained = sum(int((b["targets"] != -100).sum()) for b in four)
    assert metrics_four["trained_tokens"] == metrics_one["trained_tokens"] == trained
    assert metrics_four["empty_step"] == 0


def test_micro_batch_without_trained_tokens_contributes_nothing(tokenizer_file, tmp_path) -> None:
    convs = conversations(tokenizer_file, tmp_path / "sft")
    net = model()
    micro = SFTBatches(convs, SEQ, micro_batch=2, accum_steps=2, seed=0).next_step()
    blank = {**micro[1], "targets": torch.full_like(micro[1]["targets"], -100)}
    objective = MaskedNextToken()
    denominator = objective.step_denominator([micro[0], blank])
    loss, metrics = objective.loss(net, blank, denominator)
    assert loss == 0 and metrics["trained_tokens"] == 0
    loss.backward()
    assert all(p.grad.abs().sum() == 0 for p in net.parameters())
    grads_with_blank, _ = train_step(net, [micro[0], blank])
    grads_alone, _ = train_step(net, [micro[0]])
    for a, b in zip(grads_with_blank, grads_alone, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_step_without_trained_tokens_has_zero_loss_and_a_flag(tokenizer_file, tmp_path) -> None:
    convs = conversations(tokenizer_file, tmp_path / "sft")
    net = model()
    micro = SFTBatches(convs, SEQ, micro_batch=2, accum_steps=2, seed=0).next_step()
    blank = [{**b, "targets": torch.full_like(b["targets"], -100)} for b in micro]
    grads, metrics = train_step(net, blank)
    assert metrics["loss"] == 0 and metrics["empty_step"] == 1
    assert all(torch.isfinite(g).all() and g.abs().sum() == 0 for g in grads)


def _rank_grads(rank: int, init_file: str, convs: SFTConversations, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    net = model()
    micro = SFTBatches(convs, SEQ, 2, 2, seed=0, rank=rank, world=2).next_step()
    grads, metrics = train_step(net, micro)
    for g in grads:  # what DDP does: the mean over ranks
        dist.all_reduce(g)
        g /= 2
    loss = metrics["loss"].clone()
    dist.all_reduce(loss)
    if rank == 0:
        torch.save({"grads": grads, "loss": loss / 2}, out)
    dist.destroy_process_group()


def test_two_ranks_match_one_process(tokenizer_file, tmp_path) -> None:
    convs = conversations(tokenizer_file, tmp_path / "sft")
    grads, metrics = train_step(model(), SFTBatches(convs, SEQ, 2, 4, seed=0).next_step())
    out = tmp_path / "rank0.pt"
    mp.spawn(_rank_grads, args=(str(tmp_path / "init"), convs, str(out)), nprocs=2)
    ranks = torch.load(out)
    torch.testing.assert_close(ranks["loss"], metrics["loss"])
    for a, b in zip(ranks["grads"], grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
