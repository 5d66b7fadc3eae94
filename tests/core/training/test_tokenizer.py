import json
import re
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from llmstack_dagster.core.training.tokenizer import (
    SPECIAL_TOKENS,
    TokenizerConfig,
    load_tokenizer,
    save_tokenizer,
    special_token_ids,
    tokenizer_eos_id,
    tokenizer_hash,
    train_tokenizer,
)

TEXTS = [
    "To be, or not to be: that is the question.",
    "def f(x):\n    return x * 2\n",
    "Zoë's café — naïve 東京 🚀",
    "   leading spaces\tand\ttabs\r\n",
]


def test_round_trip_and_special_tokens(tokenizer_file: Path) -> None:
    tok = load_tokenizer(tokenizer_file)
    assert tok.get_vocab_size() == 512
    for text in TEXTS:  # byte-level: anything round-trips, no unknown token
        assert tok.decode(tok.encode(text).ids) == text
    ids = special_token_ids(tok)
    assert list(ids.values()) == list(range(len(SPECIAL_TOKENS)))
    for role, token in SPECIAL_TOKENS.items():
        assert tok.encode(f"a{token}b").ids.count(ids[role]) == 1
    assert tok.decode([ids["bos"], *tok.encode("hi").ids], skip_special_tokens=True) == "hi"


def test_learns_merges_from_the_corpus(tokenizer_file: Path) -> None:
    tok = load_tokenizer(tokenizer_file)
    text = "the king and the queen"
    assert len(tok.encode(text).ids) < len(text.encode()) / 2


def test_pretrained_tokenizer_fast_loads_it(tokenizer_file: Path) -> None:
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_file), eos_token="<|eos|>")
    assert fast.decode(fast("Hello world")["input_ids"]) == "Hello world"
    assert fast.convert_tokens_to_ids("<|assistant|>") == SPECIAL_TOKENS_IDS["assistant"]


SPECIAL_TOKENS_IDS = {role: i for i, role in enumerate(SPECIAL_TOKENS)}


def test_save_load_and_hash(tmp_path: Path) -> None:
    tok = train_tokenizer(iter(TEXTS * 20), TokenizerConfig(vocab_size=300, min_frequency=1))
    path = save_tokenizer(tok, tmp_path / "t")
    assert load_tokenizer(tmp_path / "t").to_str() == tok.to_str()
    other = save_tokenizer(
        train_tokenizer(iter(TEXTS[:1] * 20), TokenizerConfig(vocab_size=300, min_frequency=1)),
        tmp_path / "u",
    )
    assert tokenizer_hash(path) == tokenizer_hash(path)
    assert tokenizer_hash(path) != tokenizer_hash(other)


def test_vocab_must_hold_bytes_and_specials() -> None:
    with pytest.raises(ValueError):
        TokenizerConfig(vocab_size=100)


def _hf_style_tokenizer(folder: Path, eos_token: object | None) -> Path:
    """A byte-level BPE without our special tokens, like an imported Hugging Face one."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TEXTS * 20, trainer=trainer)
    path = save_tokenizer(tok, folder)
    if eos_token is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": eos_token}))
    return path


def test_eos_id_is_ours_or_the_hugging_face_configs(tokenizer_file: Path, tmp_path: Path) -> None:
    assert (
        tokenizer_eos_id(tokenizer_file) == special_token_ids(load_tokenizer(tokenizer_file))["eos"]
    )
    assert tokenizer_eos_id(tokenizer_file.parent) == tokenizer_eos_id(tokenizer_file)
    plain = _hf_style_tokenizer(tmp_path / "plain", "<|im_end|>")
    assert tokenizer_eos_id(plain) == load_tokenizer(plain).token_to_id("<|im_end|>") == 1
    added = {"content": "<|endoftext|>", "special": True, "__type": "AddedToken"}
    assert tokenizer_eos_id(_hf_style_tokenizer(tmp_path / "added", added)) == 0


def test_eos_id_names_the_file_when_it_cannot_be_found(tmp_path: Path) -> None:
    bare = _hf_style_tokenizer(tmp_path / "bare", None)
    with pytest.raises(ValueError, match=f"{re.escape(str(bare))}.*tokenizer_config.json"):
        tokenizer_eos_id(bare)
    unknown = _hf_style_tokenizer(tmp_path / "unknown", "</s>")
    with pytest.raises(ValueError, match="'</s>' is not a token of"):
        tokenizer_eos_id(unknown)
