import shutil
from pathlib import Path

import numpy as np
import pytest

from llmstack_dagster.core.training.data_loader import TokenWindows
from llmstack_dagster.core.training.preflight import TrainingInputError, check_training_inputs
from llmstack_dagster.core.training.token_shards import (
    INDEX_FILE,
    TokenShard,
    TokenShardIndex,
    load_token_index,
)


def shard(path: str, split: str, tokens: int) -> TokenShard:
    domain = path.split("/")[1] if split == "val" else None
    return TokenShard(path=path, split=split, domain=domain, tokens=tokens, docs=1, text_bytes=1)


def write_data(
    folder: Path, train_tokens: list[int], dtype: str = "uint16", vocab_size: int = 100
) -> Path:
    """A hand-made token-shard folder: train shards of the given lengths and one val shard."""
    shards = [shard(f"train/part-{i:05d}.bin", "train", n) for i, n in enumerate(train_tokens)]
    shards.append(shard("val/news/part-00000.bin", "val", 5))
    for entry in shards:
        path = folder / entry.path
        path.parent.mkdir(parents=True, exist_ok=True)
        np.arange(entry.tokens, dtype=dtype).tofile(path)
    (folder / "tokenizer.json").write_text("{}")
    index = TokenShardIndex(
        dtype=dtype,
        vocab_size=vocab_size,
        eos_id=0,
        tokenizer_hash="t",
        mixture_hash="m",
        shards=shards,
    )
    (folder / INDEX_FILE).write_text(index.model_dump_json())
    return folder


def check(folder: Path, **kwargs) -> TokenShardIndex:
    return check_training_inputs(folder, **({"seq_len": 8, "global_batch": 2} | kwargs))


def test_real_token_data_passes(token_data: Path) -> None:
    index = check_training_inputs(token_data, seq_len=32, global_batch=4, model_vocab_size=512)
    assert index == load_token_index(token_data)


def test_window_count_matches_token_windows(token_data: Path) -> None:
    index = load_token_index(token_data)
    windows = len(TokenWindows(token_data, index, index.split_shards("train"), 32))
    check_training_inputs(token_data, seq_len=32, global_batch=windows)
    with pytest.raises(TrainingInputError, match=f"has {windows} window"):
        check_training_inputs(token_data, seq_len=32, global_batch=windows + 1)


def test_hand_made_folder_passes(tmp_path: Path) -> None:
    index = check(write_data(tmp_path, [17]))  # (17 - 1) // 8 = 2 windows: exactly one batch
    assert [s.tokens for s in index.split_shards("train")] == [17]


def test_missing_index(tmp_path: Path) -> None:
    with pytest.raises(TrainingInputError, match=f"index {tmp_path / INDEX_FILE} is missing"):
        check(tmp_path)


@pytest.mark.parametrize("text", ["{not json", '{"dtype": "uint16"}'])
def test_unparseable_index(tmp_path: Path, text: str) -> None:
    write_data(tmp_path, [17])
    (tmp_path / INDEX_FILE).write_text(text)
    with pytest.raises(TrainingInputError, match=f"{tmp_path / INDEX_FILE} is unreadable"):
        check(tmp_path)


def test_missing_tokenizer(tmp_path: Path) -> None:
    (write_data(tmp_path, [17]) / "tokenizer.json").unlink()
    with pytest.raises(TrainingInputError, match=f"tokenizer {tmp_path}/tokenizer.json"):
        check(tmp_path)


def test_dtype_too_small_for_vocabulary(tmp_path: Path) -> None:
    write_data(tmp_path, [17], dtype="uint16", vocab_size=70_000)
    with pytest.raises(TrainingInputError, match="uint16 holds ids up to 65535.* 70000 tokens"):
        check(tmp_path)


def test_vocabulary_of_exactly_65536_fits_uint16(tmp_path: Path) -> None:
    check(write_data(tmp_path, [17], dtype="uint16", vocab_size=65_536))


def test_non_integer_dtype(tmp_path: Path) -> None:
    write_data(tmp_path, [17], dtype="float32")
    with pytest.raises(TrainingInputError, match="float32 is not an unsigned integer"):
        check(tmp_path)


def test_truncated_shard_names_file_and_sizes(token_data: Path, tmp_path: Path) -> None:
    data = Path(shutil.copytree(token_data, tmp_path / "data"))
    path = data / load_token_index(data).split_shards("train")[0].path
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(size - 6)
    with pytest.raises(TrainingInputError) as err:
        check_training_inputs(data, seq_len=32, global_batch=4)
    assert f"{path} has {size - 6} bytes, expected {size}" in str(err.value)


def test_missing_shards_are_all_reported(tmp_path: Path) -> None:
    write_data(tmp_path, [17, 17])
    for name in ("train/part-00001.bin", "val/news/part-00000.bin"):
        (tmp_path / name).unlink()
    with pytest.raises(TrainingInputError) as err:
        check(tmp_path)
    message = str(err.value)
    assert f"{tmp_path / 'train/part-00001.bin'} is missing" in message
    assert f"{tmp_path / 'val/news/part-00000.bin'} is missing" in message
    assert "train/part-00000.bin" not in message


@pytest.mark.parametrize("train_tokens", [[], [0]])
def test_empty_mixture(tmp_path: Path, train_tokens: list[int]) -> None:
    write_data(tmp_path, train_tokens)
    with pytest.raises(TrainingInputError, match="the training mixture is empty") as err:
        check(tmp_path)
    assert str(tmp_path / INDEX_FILE) in str(err.value)


def test_budget_below_one_batch(tmp_path: Path) -> None:
    write_data(tmp_path, [16, 9])  # (16 - 1) // 8 + (9 - 1) // 8 = 1 + 1 windows
    with pytest.raises(TrainingInputError) as err:
        check(tmp_path, global_batch=3)
    message = str(err.value)
    assert "has 2 window(s) of seq_len + 1 = 9 tokens" in message
    assert "needs global_batch = 3 windows" in message
    assert "token budget" in message and "micro_batch_size" in message and "seq_len" in message
    check(tmp_path, global_batch=2)


def test_model_vocab_smaller_than_tokenizer(tmp_path: Path) -> None:
    write_data(tmp_path, [17], vocab_size=100)
    with pytest.raises(TrainingInputError, match="vocab_size 99 is smaller than .* 100"):
        check(tmp_path, model_vocab_size=99)
    check(tmp_path, model_vocab_size=100)


def test_sft_datasets_are_checked_before_training(tokenizer_file, tmp_path) -> None:
    from support.sft_data import write_sft_dataset

    from llmstack_dagster.core.training.preflight import check_sft_inputs

    rows = [([1, 5, 6, 7, 2], [0, 0, 1, 1, 1])] * 6
    good = write_sft_dataset(tmp_path / "good", tokenizer_file, rows, rows[:1], pad_id=3, eos_id=2)
    index = check_sft_inputs(good, seq_len=8, global_batch=4, packing=False)
    assert index.max_len == 5
    with pytest.raises(TrainingInputError, match="do not fit rows"):
        check_sft_inputs(good, seq_len=3, global_batch=1, packing=False)
    with pytest.raises(TrainingInputError, match="one optimizer step needs global_batch = 8"):
        check_sft_inputs(good, seq_len=8, global_batch=8, packing=False)
    with pytest.raises(TrainingInputError, match="smaller than the tokenizer"):
        check_sft_inputs(good, seq_len=8, global_batch=1, packing=True, model_vocab_size=8)
    padded = write_sft_dataset(tmp_path / "pad", tokenizer_file, rows, rows, pad_id=2, eos_id=2)
    with pytest.raises(TrainingInputError, match="equals eos"):
        check_sft_inputs(padded, seq_len=8, global_batch=1, packing=True)
    (good / "train" / "part-00000.parquet").unlink()
    with pytest.raises(TrainingInputError, match="shard files missing: train/part-00000"):
        check_sft_inputs(good, seq_len=8, global_batch=1, packing=True)
    with pytest.raises(TrainingInputError, match="is missing"):
        check_sft_inputs(tmp_path / "nowhere", seq_len=8, global_batch=1, packing=True)
