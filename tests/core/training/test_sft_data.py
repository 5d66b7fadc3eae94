import random
from pathlib import Path

import pytest
import torch
from support.sft_data import Row, write_sft_dataset

from llmstack_dagster.core.chat.sft_index import load_sft_index
from llmstack_dagster.core.training.data_loader import LoaderPosition
from llmstack_dagster.core.training.sft_data import SFTBatches, SFTConversations, pack_rows

PAD, EOS = 3, 2


def conversations(n: int, seed: int = 0, longest: int = 12) -> list[Row]:
    """Random conversations: a prompt (mask 0) then an answer ending in eos (mask 1)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        prompt = [rng.randrange(4, 60) for _ in range(rng.randrange(1, longest // 2))]
        answer = [rng.randrange(4, 60) for _ in range(rng.randrange(0, longest // 2 - 1))]
        rows.append((prompt + answer + [EOS], [0] * len(prompt) + [1] * (len(answer) + 1)))
    return rows


def sft_folder(tmp_path: Path, tokenizer_file: Path, rows: list[Row]) -> SFTConversations:
    folder = write_sft_dataset(tmp_path / "sft", tokenizer_file, rows, rows[:2], PAD, EOS)
    return SFTConversations(folder, load_sft_index(folder))


def test_packed_rows_hold_whole_conversations_with_shifted_masked_targets(
    tokenizer_file, tmp_path
) -> None:
    rows = conversations(40)
    convs = sft_folder(tmp_path, tokenizer_file, rows)
    assert len(convs) == 40
    stream = SFTBatches(convs, seq_len=16, micro_batch=4, accum_steps=1, seed=3)
    packed = stream._epoch_rows(0)
    assert sorted(c for row in packed for c in row) == list(range(40))
    assert all(sum(len(rows[c][0]) for c in row) <= 17 for row in packed)
    batch = stream.next_step()[0]
    assert {k: v.shape for k, v in batch.items()} == {
        k: (4, 16) for k in ("input_ids", "targets", "position_ids", "segment_ids")
    }
    for r, convs_of_row in enumerate(packed[:4]):
        at = 0
        for k, c in enumerate(convs_of_row, start=1):
            ids, mask = rows[c]
            n = min(len(ids), 16 - at)
            span = slice(at, at + n)
            assert batch["input_ids"][r, span].tolist() == ids[:n]
            assert batch["segment_ids"][r, span].tolist() == [k] * n
            assert batch["position_ids"][r, span].tolist() == list(range(n))
            want = [t if m else -100 for t, m in zip(ids[1:], mask[1:], strict=True)] + [-100]
            assert batch["targets"][r, span].tolist() == want[:n]
            at += len(ids)
        assert batch["input_ids"][r, at:].eq(PAD).all() and batch["segment_ids"][r, at:].eq(0).all()
        assert batch["targets"][r, at - 1 :].eq(-100).all()


def test_greedy_packing_starts_a_row_when_the_next_does_not_fit() -> None:
    lengths = torch.tensor([5, 4, 3, 6, 1]).numpy()
    order = torch.tensor([0, 1, 2, 3, 4]).numpy()
    assert pack_rows(lengths, order, 9) == [[0, 1], [2, 3], [4]]


def test_resume_from_serialized_position_continues_exactly(tokenizer_file, tmp_path) -> None:
    convs = sft_folder(tmp_path, tokenizer_file, conversations(40))
    full = SFTBatches(convs, 16, micro_batch=2, accum_steps=2, seed=7)
    steps = [full.next_step() for _ in range(len(full._epoch_rows(0)) // 4 + 3)]
    assert full.position.epoch == 1
    again = SFTBatches(convs, 16, 2, 2, seed=7)
    assert all(
        torch.equal(a["targets"], b["targets"])
        for a, b in zip(steps[0], again.next_step(), strict=True)
    )
    part = SFTBatches(convs, 16, 2, 2, seed=7)
    for _ in range(4):
        part.next_step()
    saved = part.position.model_dump_json()
    position = LoaderPosition.model_validate_json(saved)
    resumed = SFTBatches(convs, 16, 2, 2, seed=7, position=position)
    for expected in steps[4:]:
        for a, b in zip(expected, resumed.next_step(), strict=True):
            assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("packing", [True, False])
def test_ranks_and_micro_batches_split_the_same_global_batch(
    tokenizer_file, tmp_path, packing: bool
) -> None:
    convs = sft_folder(tmp_path, tokenizer_file, conversations(40))
    one = SFTBatches(convs, 16, micro_batch=4, accum_steps=1, seed=1, packing=packing)
    whole = one.next_step()[0]
    ranks = [SFTBatches(convs, 16, 1, 2, seed=1, rank=r, world=2, packing=packing) for r in (0, 1)]
    micro = [s.next_step() for s in ranks]
    split = [micro[r][m] for m in range(2) for r in range(2)]
    for key in whole:
        assert torch.equal(whole[key], torch.cat([b[key] for b in split]))
    assert one.tokens_per_step == 4 * 16 and ranks[0].global_batch == 4


def test_without_packing_each_row_is_one_padded_conversation(tokenizer_file, tmp_path) -> None:
    rows = conversations(10)
    convs = sft_folder(tmp_path, tokenizer_file, rows)
    stream = SFTBatches(convs, 16, micro_batch=10, accum_steps=1, seed=0, packing=False)
    batch = stream.next_step()[0]
    got = set()
    for r in range(10):
        n = int(batch["segment_ids"][r].eq(1).sum())
        assert batch["input_ids"][r, n:].eq(PAD).all() and batch["segment_ids"][r, n:].eq(0).all()
        assert batch["targets"][r, n - 1 :].eq(-100).all()
        got.add(tuple(batch["input_ids"][r, :n].tolist()))
    assert got == {tuple(ids) for ids, _ in rows}


def test_conversations_longer_than_a_row_are_rejected(tokenizer_file, tmp_path) -> None:
    convs = sft_folder(tmp_path, tokenizer_file, conversations(10, longest=30))
    with pytest.raises(ValueError, match="do not fit rows of seq_len"):
        SFTBatches(convs, seq_len=8, micro_batch=1, accum_steps=1, seed=0)
    with pytest.raises(ValueError, match="global batch 64 > "):
        SFTBatches(convs, seq_len=64, micro_batch=64, accum_steps=1, seed=0)
