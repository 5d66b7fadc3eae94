"""Training fixtures for the training and resource tests (a plugin of ``tests/conftest.py``).

A small real corpus (news, code, Hamlet), its tokenizer and its token shards, built once.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from llmstack_dagster.core.schema import DOCUMENT_SCHEMA, documents_table, make_document
from llmstack_dagster.core.storage import ShardManifest, ShardWriter, Storage, write_manifest
from llmstack_dagster.core.training.token_shards import (
    TokenShardConfig,
    load_token_index,
    run_token_shards,
)
from llmstack_dagster.core.training.tokenizer import (
    TokenizerConfig,
    save_tokenizer,
    train_tokenizer,
)

DEMO_VOCAB = 512


def sample_documents(shared_data: Path) -> list[dict]:
    """Real documents from three domains: news, code and books (split in paragraphs)."""
    docs = []
    day = datetime(2024, 1, 1, tzinfo=UTC)
    news = shared_data / "pretrain/news/cnn_dailymail.jsonl"
    for i, line in enumerate(news.read_text().splitlines()[:60]):
        row = json.loads(line)
        docs.append(
            make_document(
                id=f"cnn/{row['id']}",
                text=row["text"],
                domain="news",
                source="cnn",
                created=day.replace(day=1 + i % 28),
            )
        )
    code = shared_data / "pretrain/code/code_sample.jsonl"
    for line in code.read_text().splitlines()[:40]:
        row = json.loads(line)
        docs.append(
            make_document(
                id=f"code/{row['id']}",
                text=row["text"][:4000],
                domain="code",
                source="code",
                created=day.replace(month=2),
            )
        )
    book = (shared_data / "pretrain/books/hamlet_gut.txt").read_text()
    for i, para in enumerate(p for p in book.split("\n\n") if len(p) > 200):
        docs.append(
            make_document(
                id=f"hamlet/{i}",
                text=para,
                domain="books",
                source="gut",
                created=day.replace(month=3),
            )
        )
    return docs


@pytest.fixture(scope="session")
def corpus(
    shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Storage, ShardManifest]:
    """The sample documents as a mixture manifest of two Parquet shards."""
    storage = Storage(str(tmp_path_factory.mktemp("corpus")))
    writer = ShardWriter(storage, "mixture/all", DOCUMENT_SCHEMA, max_rows=200)
    writer.write_table(documents_table(sample_documents(shared_data)))
    manifest = ShardManifest(asset="mixture", partition="all", shards=writer.close())
    write_manifest(storage, manifest)
    return storage, manifest


@pytest.fixture(scope="session")
def tokenizer_file(corpus: tuple[Storage, ShardManifest], tmp_path_factory) -> Path:
    storage, manifest = corpus
    texts = (
        t
        for _, table in ((s, storage.read_table(s.path, ["text"])) for s in manifest.shards)
        for t in table.column("text").to_pylist()
    )
    tok = train_tokenizer(texts, TokenizerConfig(vocab_size=DEMO_VOCAB))
    return save_tokenizer(tok, tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def token_data(corpus, tokenizer_file) -> Path:
    """Local folder of token shards (index.json, tokenizer.json, train/, val/)."""
    storage, manifest = corpus
    shards = run_token_shards(
        storage,
        manifest,
        tokenizer_file,
        TokenShardConfig(val_fraction=0.1, max_tokens_per_shard=60_000),
    )
    return Path(storage.local_path(shards.folder))


def assert_same_output(folder: Path, expected: Path) -> None:
    """Every committed file byte for byte, the index up to its data version."""
    index, reference = load_token_index(folder), load_token_index(expected)
    strip = {"data_version": None}
    assert index.model_copy(update=strip) == reference.model_copy(update=strip)
    files = sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(expected) for p in expected.rglob("*") if p.is_file())
    for rel in files:
        if rel.name != "index.json":
            assert (folder / rel).read_bytes() == (expected / rel).read_bytes(), rel
