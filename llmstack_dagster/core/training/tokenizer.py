"""Byte-level BPE tokenizer trained with Hugging Face ``tokenizers``.

Byte-level pre-tokenization (GPT-2, Radford et al. 2019) makes every UTF-8 string encodable
without an unknown token; BPE merges (Sennrich et al. 2016) are learned up to ``vocab_size``.
Special tokens get the first ids: BOS, EOS, PAD, then chat-role tokens for SFT.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from pydantic import BaseModel, Field
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from llmstack_dagster.core.training.atomic import write_text_atomic

SPECIAL_TOKENS: dict[str, str] = {
    "bos": "<|bos|>",
    "eos": "<|eos|>",
    "pad": "<|pad|>",
    "system": "<|system|>",
    "user": "<|user|>",
    "assistant": "<|assistant|>",
    "end_turn": "<|end_turn|>",
}
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"  # Hugging Face: names eos_token and the rest


class TokenizerConfig(BaseModel):
    """32k for real runs (Llama-2 used 32k); a few thousand is enough for the demo."""

    vocab_size: int = Field(default=32768, ge=len(SPECIAL_TOKENS) + 256)
    min_frequency: int = 2
    max_chars_per_doc: int = 100_000


def train_tokenizer(texts: Iterable[str], config: TokenizerConfig) -> Tokenizer:
    """Learn byte-level BPE merges from ``texts`` (streamed; each clipped to max chars)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )

    def clipped() -> Iterator[str]:
        for text in texts:
            yield text[: config.max_chars_per_doc]

    tokenizer.train_from_iterator(clipped(), trainer=trainer)
    return tokenizer


def save_tokenizer(tokenizer: Tokenizer, folder: Path) -> Path:
    """Write ``folder/tokenizer.json`` atomically; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / TOKENIZER_FILE
    write_text_atomic(path, tokenizer.to_str())
    return path


def load_tokenizer(path: Path) -> Tokenizer:
    """A saved tokenizer, from ``tokenizer.json`` or the folder that holds it."""
    path = Path(path)
    return Tokenizer.from_file(str(path / TOKENIZER_FILE if path.is_dir() else path))


def has_our_special_tokens(tokenizer: Tokenizer) -> bool:
    """Whether ``tokenizer`` is one of ours (every token of :data:`SPECIAL_TOKENS`)."""
    return all(tokenizer.token_to_id(t) is not None for t in SPECIAL_TOKENS.values())


def has_chat_template(tokenizer_path: Path) -> bool:
    """Whether an imported tokenizer (``tokenizer.json`` with the Hugging Face
    ``tokenizer_config.json`` beside it) carries a ``chat_template``: an instruct model."""
    config = Path(tokenizer_path).parent / TOKENIZER_CONFIG_FILE
    return config.is_file() and bool(json.loads(config.read_text()).get("chat_template"))


def special_token_ids(tokenizer: Tokenizer) -> dict[str, int]:
    """Role -> id for every special token (raises if one is missing)."""
    ids = {role: tokenizer.token_to_id(token) for role, token in SPECIAL_TOKENS.items()}
    missing = [role for role, i in ids.items() if i is None]
    if missing:
        raise ValueError(f"tokenizer lacks special tokens {missing}")
    return ids


def tokenizer_eos_id(tokenizer_path: Path) -> int:
    """The id of the token that ends each document: our ``<|eos|>`` when the tokenizer has it,
    else (an imported Hugging Face tokenizer) the ``eos_token`` named by the
    ``tokenizer_config.json`` beside ``tokenizer.json``."""
    path = Path(tokenizer_path)
    file = path / TOKENIZER_FILE if path.is_dir() else path
    tokenizer = load_tokenizer(file)
    own = tokenizer.token_to_id(SPECIAL_TOKENS["eos"])
    if own is not None:
        return own
    config_file = file.parent / TOKENIZER_CONFIG_FILE
    if not config_file.is_file():
        raise ValueError(
            f"tokenizer {file} has no {SPECIAL_TOKENS['eos']} token and no "
            f"{TOKENIZER_CONFIG_FILE} beside it naming its eos_token"
        )
    eos = json.loads(config_file.read_text()).get("eos_token")
    if isinstance(eos, dict):  # an AddedToken: {"content": ..., "special": true, ...}
        eos = eos.get("content")
    eos_id = tokenizer.token_to_id(eos) if isinstance(eos, str) else None
    if eos_id is None:
        raise ValueError(f"{config_file}: eos_token {eos!r} is not a token of {file}")
    return eos_id


def tokenizer_hash(path: Path) -> str:
    """SHA-256 of the canonical tokenizer JSON (independent of formatting)."""
    return hashlib.sha256(load_tokenizer(path).to_str().encode()).hexdigest()
