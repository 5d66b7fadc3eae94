"""A synthetic multi-domain corpus with known duplicates (shuffle-dedup and Ray tests)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from llmstack_dagster.core.curation.dedup.synthetic import edit, load_texts
from llmstack_dagster.core.schema import DOCUMENT_SCHEMA, make_document
from llmstack_dagster.core.storage import ShardManifest, ShardWriter, Storage

EPOCH = datetime(2020, 1, 1, tzinfo=UTC)


def synthetic_domains(
    shared_data: Path, storage: Storage, seed: int = 0, shard_rows: int = 13
) -> dict[str, ShardManifest]:
    """Three domains of real text with exact copies, edited copies across domains and one
    boilerplate bucket of 12 near-copies; small shards, so many of them."""
    rng = np.random.default_rng(seed)
    texts = load_texts(shared_data, min_words=60)[:90]
    vocabulary = " ".join(texts[:5]).split()
    docs: dict[str, list[tuple[str, str, int]]] = {"web": [], "news": [], "code": []}
    names = list(docs)
    for i, text in enumerate(texts):
        domain = names[i % 3]
        docs[domain].append((f"{domain}/{i}", text, int(rng.integers(0, 50))))
        if i % 4 == 0:
            other = names[(i + 1) % 3]
            docs[other].append((f"{other}/e{i}", edit(text, rng, vocabulary, 0.2), i % 7))
        if i % 9 == 0:
            docs[domain].append((f"{domain}/x{i}", text, int(rng.integers(0, 50))))
    boiler = texts[0][:400]
    for k in range(12):
        docs["web"].append((f"web/b{k:02d}", boiler + f" item {k}", k % 3))
    out = {}
    for domain, rows in docs.items():
        writer = ShardWriter(storage, f"raw/{domain}", DOCUMENT_SCHEMA, max_rows=shard_rows)
        for doc_id, text, days in rows:
            writer.write_row(
                make_document(
                    id=doc_id, text=text, domain=domain, source=f"{domain}-src",
                    created=EPOCH + timedelta(days=days),
                )
            )  # fmt: skip
        out[domain] = ShardManifest(asset="raw", partition=domain, shards=writer.close())
    return out
