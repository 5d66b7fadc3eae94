from pathlib import Path

import numpy as np
import torch

from llmstack_dagster.core.training.data_loader import LoaderPosition, TokenWindows, TrainBatches
from llmstack_dagster.core.training.token_shards import load_token_index, read_tokens


def windows(token_data: Path, seq_len: int = 32) -> TokenWindows:
    index = load_token_index(token_data)
    return TokenWindows(token_data, index, index.split_shards("train"), seq_len)


def test_windows_are_shifted_slices_of_the_shards(token_data: Path) -> None:
    index = load_token_index(token_data)
    win = windows(token_data)
    shards = index.split_shards("train")
    assert len(win) == sum((s.tokens - 1) // 32 for s in shards)
    first_of_second = int(win.starts[1])
    x, y = win.batch(np.array([0, first_of_second + 2]))
    assert torch.equal(x[:, 1:], y[:, :-1])
    second = read_tokens(token_data, index, shards[1])
    assert x[1].tolist() == second[64:96].tolist()


def test_resume_from_serialized_position_continues_exactly(token_data: Path) -> None:
    win = windows(token_data)
    full = TrainBatches(win, micro_batch=4, accum_steps=2, seed=7)
    steps = [full.next_step() for _ in range(len(win) // 8 + 3)]  # crosses an epoch
    assert full.position.epoch == 1
    part = TrainBatches(win, micro_batch=4, accum_steps=2, seed=7)
    for _ in range(5):
        part.next_step()
    saved = part.position.model_dump_json()
    resumed = TrainBatches(win, 4, 2, seed=7, position=LoaderPosition.model_validate_json(saved))
    for expected in steps[5:]:
        got = resumed.next_step()
        assert all(
            torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(expected, got, strict=True)
        )


def test_ranks_split_the_same_global_batch(token_data: Path) -> None:
    win = windows(token_data)
    one = TrainBatches(win, micro_batch=2, accum_steps=2, seed=1).next_step()
    ranks = [TrainBatches(win, 2, 1, seed=1, rank=r, world=2).next_step()[0] for r in (0, 1)]
    ids = [b["input_ids"] for b in one]
    assert torch.equal(torch.cat(ids), torch.cat([b["input_ids"] for b in ranks]))
    other_seed = TrainBatches(win, 2, 2, seed=2).next_step()
    assert not torch.equal(one[0]["input_ids"], other_seed[0]["input_ids"])
