from pathlib import Path

import pytest

from llmstack_dagster.core.training.tokenizer import (
    SPECIAL_TOKENS,
    TokenizerConfig,
    load_tokenizer,
    save_tokenizer,
    special_token_ids,
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
