"""Cheap checks of a training data folder before any training step (or cloud GPU) starts.

Reads ``index.json`` and stats the files it lists; the token data itself is never read.
Each bad input becomes a :class:`TrainingInputError` naming the problem and the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llmstack_dagster.core.chat.sft_index import SFT_INDEX_FILE, SFTIndex
from llmstack_dagster.core.training.token_shards import INDEX_FILE, TokenShardIndex


class TrainingInputError(ValueError):
    """The training data folder cannot feed the requested run."""


def check_training_inputs(
    data_dir: Path, *, seq_len: int, global_batch: int, model_vocab_size: int | None = None
) -> TokenShardIndex:
    """Load and return the index of ``data_dir`` after checking it can feed one optimizer step.

    ``global_batch`` is micro batch x grad accumulation x world size, in windows of
    ``seq_len + 1`` tokens; ``model_vocab_size`` is the model's embedding size, if known.
    """
    data_dir = Path(data_dir)
    index_file = data_dir / INDEX_FILE
    index = _load_index(index_file)
    tokenizer = data_dir / index.tokenizer_file
    if not tokenizer.is_file():
        raise TrainingInputError(f"tokenizer {tokenizer} listed in {index_file} is missing")
    dtype = _token_dtype(index, index_file)
    if model_vocab_size is not None and model_vocab_size < index.vocab_size:
        raise TrainingInputError(
            f"the model's vocab_size {model_vocab_size} is smaller than the tokenizer's "
            f"vocabulary of {index.vocab_size} ({index_file}): token ids up to "
            f"{index.vocab_size - 1} would index past the embedding"
        )
    train = index.split_shards("train")
    train_tokens = sum(s.tokens for s in train)
    if train_tokens == 0:
        raise TrainingInputError(
            f"the training mixture is empty: {index_file} lists {len(train)} train shard(s) "
            f"with 0 tokens"
        )
    _check_shard_files(data_dir, index, dtype)
    windows = sum(max(0, (s.tokens - 1) // seq_len) for s in train)
    if windows < global_batch:
        raise TrainingInputError(
            f"{index_file}: the train split has {windows} window(s) of seq_len + 1 = "
            f"{seq_len + 1} tokens ({train_tokens} tokens in {len(train)} shard(s)), but one "
            f"optimizer step needs global_batch = {global_batch} windows; raise the token "
            f"budget, or lower micro_batch_size / grad_accum_steps, or seq_len"
        )
    return index


def _load_index(index_file: Path) -> TokenShardIndex:
    if not index_file.is_file():
        raise TrainingInputError(f"token shard index {index_file} is missing")
    try:
        return TokenShardIndex.model_validate_json(index_file.read_bytes())
    except ValueError as exc:  # invalid JSON or fields (pydantic's ValidationError)
        raise TrainingInputError(f"token shard index {index_file} is unreadable: {exc}") from exc


def _token_dtype(index: TokenShardIndex, index_file: Path) -> np.dtype:
    """The shard dtype, checked to be an unsigned integer that holds every token id."""
    try:
        dtype = np.dtype(index.dtype)
    except TypeError as exc:
        raise TrainingInputError(f"{index_file}: unknown shard dtype {index.dtype!r}") from exc
    if dtype.kind != "u":
        raise TrainingInputError(f"{index_file}: shard dtype {dtype} is not an unsigned integer")
    if index.vocab_size - 1 > np.iinfo(dtype).max:
        raise TrainingInputError(
            f"{index_file}: shard dtype {dtype} holds ids up to {np.iinfo(dtype).max}, "
            f"but the vocabulary has {index.vocab_size} tokens"
        )
    return dtype


def _check_shard_files(data_dir: Path, index: TokenShardIndex, dtype: np.dtype) -> None:
    """Every listed shard exists with exactly ``tokens * itemsize`` bytes (all reported)."""
    problems = []
    for shard in index.shards:
        path = data_dir / shard.path
        expected = shard.tokens * dtype.itemsize
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif (size := path.stat().st_size) != expected:
            problems.append(
                f"{path} has {size} bytes, expected {expected} ({shard.tokens} {dtype} tokens)"
            )
    if problems:
        listed = "\n  ".join(problems)
        raise TrainingInputError(
            f"token shards listed in {data_dir / INDEX_FILE} do not match:\n  {listed}"
        )


def check_sft_inputs(
    data_dir: Path,
    *,
    seq_len: int,
    global_batch: int,
    packing: bool,
    model_vocab_size: int | None = None,
) -> SFTIndex:
    """The same checks for a rendered SFT dataset (``core/chat/sft_index.py``): index and
    tokenizer present, pad distinct from eos, every conversation fits a row, the shard files
    exist, and the training split fills one optimizer step."""
    data_dir = Path(data_dir)
    index_file = data_dir / SFT_INDEX_FILE
    if not index_file.is_file():
        raise TrainingInputError(f"SFT dataset index {index_file} is missing")
    try:
        index = SFTIndex.model_validate_json(index_file.read_text())
    except (OSError, ValueError) as exc:
        raise TrainingInputError(f"SFT dataset index {index_file} is unreadable: {exc}") from exc
    if not (data_dir / index.tokenizer_file).is_file():
        raise TrainingInputError(f"tokenizer {data_dir / index.tokenizer_file} is missing")
    if index.pad_id == index.eos_id:
        raise TrainingInputError(
            f"{index_file}: pad id {index.pad_id} equals eos: the end of a turn would be padded "
            "away and never learned"
        )
    if model_vocab_size is not None and model_vocab_size < index.vocab_size:
        raise TrainingInputError(
            f"the model's vocab_size {model_vocab_size} is smaller than the tokenizer's "
            f"vocabulary of {index.vocab_size} ({index_file})"
        )
    if index.max_len > seq_len + 1:
        raise TrainingInputError(
            f"{index_file}: conversations of up to {index.max_len} tokens do not fit rows of "
            f"seq_len + 1 = {seq_len + 1}; raise seq_len or render with a smaller max_len"
        )
    missing = [s.path for s in index.shards if not (data_dir / s.path).is_file()]
    if missing:
        raise TrainingInputError(f"{index_file}: shard files missing: {', '.join(missing)}")
    train = index.split_shards("train")
    conversations = sum(s.rows for s in train)
    if conversations == 0:
        raise TrainingInputError(f"the SFT training split of {index_file} is empty")
    rows = sum(s.tokens for s in train) // (seq_len + 1) if packing else conversations
    if rows < global_batch:
        raise TrainingInputError(
            f"{index_file}: about {rows} training rows of {seq_len + 1} tokens "
            f"({conversations} conversations, packing {'on' if packing else 'off'}); one "
            f"optimizer step needs global_batch = {global_batch}: add data, or lower "
            "micro_batch_size / grad_accum_steps"
        )
    return index
