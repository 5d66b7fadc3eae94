"""Fixtures for selection tests: real documents from ../shared/data written as manifests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from llmstack_dagster.core.schema import DOCUMENT_SCHEMA
from llmstack_dagster.core.storage import ShardManifest, ShardWriter, Storage


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def real_texts(shared_data: Path) -> dict[str, list[str]]:
    """Real texts per domain: pile (mixed web-like), news, wiki, code."""
    pretrain = shared_data / "pretrain"
    return {
        "pile": [row["contents"] for row in _jsonl(pretrain / "mixed" / "pile_sample.jsonl")],
        "news": [row["text"] for row in _jsonl(pretrain / "news" / "xsum.jsonl")]
        + [row["text"] for row in _jsonl(pretrain / "news" / "cnn_dailymail.jsonl")],
        "wiki": [row["text"] for row in _jsonl(pretrain / "wiki" / "wiki_bio.jsonl")],
        "code": [row["text"] for row in _jsonl(pretrain / "code" / "code_sample.jsonl")],
    }


WriteDocs = Callable[..., ShardManifest]


@pytest.fixture
def write_docs(storage: Storage) -> WriteDocs:
    """Write rows (DOCUMENT_SCHEMA plus any extra columns) as a manifest's shards."""

    def write(
        rows: list[dict[str, Any]], asset: str, partition: str, max_rows: int = 200
    ) -> ShardManifest:
        extra = [name for name in rows[0] if name not in DOCUMENT_SCHEMA.names]
        table = pa.Table.from_pylist(rows)
        schema = pa.schema(list(DOCUMENT_SCHEMA) + [table.schema.field(n) for n in extra])
        writer = ShardWriter(storage, f"{asset}/{partition}/data", schema, max_rows=max_rows)
        writer.write_table(table)
        shards = writer.close()
        return ShardManifest(
            asset=asset, partition=partition, shards=shards, counts={"kept": len(rows)}
        )

    return write
