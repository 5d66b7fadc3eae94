"""Real sample texts from ../shared/data, split into reproducible train/test halves."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

from llmstack_dagster.core.schema import DOCUMENT_SCHEMA, make_document
from llmstack_dagster.core.storage import ShardManifest, ShardWriter, Storage

BOOK_CHUNK_LINES = 80


def _jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def wiki_texts(data: Path) -> list[str]:
    return [r["text"] for r in _jsonl(data / "pretrain/wiki/wiki_bio.jsonl")]


def book_texts(data: Path) -> list[str]:
    """Every book cut into chunks of :data:`BOOK_CHUNK_LINES` lines."""
    chunks = []
    for path in sorted((data / "pretrain/books").glob("*.txt")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for i in range(0, len(lines), BOOK_CHUNK_LINES):
            chunk = "\n".join(lines[i : i + BOOK_CHUNK_LINES]).strip()
            if chunk:
                chunks.append(chunk)
    return chunks


def web_texts(data: Path) -> list[str]:
    """CCNet head pages plus the Pile's web subsets (Pile-CC, OpenWebText2)."""
    texts = [r["text"] for p in sorted((data / "pretrain/web").glob("cc_en_head-*.jsonl"))
             for r in _jsonl(p)]  # fmt: skip
    texts += [r["contents"] for r in _jsonl(data / "pretrain/mixed/pile_sample.jsonl")
              if r["metadata"]["pile_set_name"] in ("Pile-CC", "OpenWebText2")]  # fmt: skip
    return texts


def code_texts(data: Path) -> list[str]:
    return [r["text"] for r in _jsonl(data / "pretrain/code/code_sample.jsonl")]


def news_texts(data: Path) -> list[str]:
    return [r["text"] for name in ("cnn_dailymail.jsonl", "xsum.jsonl")
            for r in _jsonl(data / "pretrain/news" / name)]  # fmt: skip


def rejected_replies(data: Path) -> list[str]:
    """The last assistant turn of each HH-RLHF harmless 'rejected' dialogue."""
    rows = _jsonl(data / "preference/hh_rlhf_harmless.jsonl.gz")
    return [r["rejected"].rsplit("\n\nAssistant:", 1)[-1].strip() for r in rows]


def halves(texts: list[str]) -> tuple[list[str], list[str]]:
    """(even-indexed, odd-indexed): a deterministic train/test split."""
    return texts[::2], texts[1::2]


def write_docs(storage: Storage, asset: str, domain: str, texts: list[str]) -> ShardManifest:
    """Write texts as documents of ``domain`` and return their manifest."""
    writer = ShardWriter(storage, f"{asset}/{domain}", DOCUMENT_SCHEMA, max_rows=500)
    created = datetime(2024, 1, 1, tzinfo=UTC)
    for i, text in enumerate(texts):
        writer.write_row(make_document(id=f"{domain}/{i}", text=text, domain=domain,
                                       source=f"test-{domain}", created=created))  # fmt: skip
    return ShardManifest(asset=asset, partition=domain, shards=writer.close())
