from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest
from tokenizers import Tokenizer

from llmstack_dagster.core.curation.selection.mixture import EPOCH_COLUMN
from llmstack_dagster.core.midtraining.sources import (
    count_tokens,
    id_hash,
    index_replay,
    index_targets,
    load_val_ids,
    original_id,
)
from llmstack_dagster.core.schema import DOCUMENT_SCHEMA, make_document
from llmstack_dagster.core.storage import ShardManifest, ShardWriter, Storage
from llmstack_dagster.core.training.tokenizer import load_tokenizer

DAY = datetime(2024, 1, 1, tzinfo=UTC)


def _manifest(storage: Storage, name: str, rows: list[dict], schema: pa.Schema) -> ShardManifest:
    writer = ShardWriter(storage, f"{name}/data", schema, max_rows=2)
    writer.write_table(pa.Table.from_pylist(rows, schema=schema))
    return ShardManifest(asset=name, shards=writer.close())


def _doc(doc_id: str, text: str = "some text", domain: str = "news") -> dict:
    return make_document(id=doc_id, text=text, domain=domain, source="s", created=DAY)


def test_original_id_of_a_mixture_copy() -> None:
    assert original_id("cnn/1#epoch2", 2) == "cnn/1"
    assert original_id("cnn/1", 1) == original_id("cnn/1", None) == "cnn/1"


def test_val_ids_from_a_manifest_a_path_or_a_set(storage: Storage) -> None:
    storage.write_table("tok/val_ids.parquet", pa.table({"id": ["a", "b"]}))
    manifest = ShardManifest(asset="tok", extra={"val_ids": "tok/val_ids.parquet"})
    assert load_val_ids(storage, manifest) == {"a", "b"}
    assert load_val_ids(storage, "tok/val_ids.parquet") == {"a", "b"}
    assert load_val_ids(storage, frozenset({"c"})) == {"c"}


def test_one_row_of_each_pretraining_val_document_goes_to_val(storage: Storage) -> None:
    schema = DOCUMENT_SCHEMA.append(pa.field(EPOCH_COLUMN, pa.int32()))
    rows = [
        _doc("x#epoch2") | {EPOCH_COLUMN: 2},  # the copy listed as val comes first
        _doc("y") | {EPOCH_COLUMN: 1},
        _doc("x") | {EPOCH_COLUMN: 1},
        _doc("z", "longer text here") | {EPOCH_COLUMN: 1},
    ]
    replay = _manifest(storage, "mixture", rows, schema)
    index = index_replay(storage, replay, {"x#epoch2", "x", "gone"})
    assert index.val_row.tolist() == [True, False, False, False]
    assert index.original_hash[0] == index.original_hash[2] == id_hash("x")
    assert sorted(index.pretrain_val_hashes.tolist()) == sorted([id_hash("x"), id_hash("gone")])
    assert index.missing_val_ids == 1
    assert index.text_bytes.tolist() == [9, 9, 9, 16]
    assert index.rows.offsets.tolist() == [0, 2, 4]


def test_targets_count_exact_tokens_and_must_hold_their_domain(
    storage: Storage, tokenizer_file
) -> None:
    tok: Tokenizer = load_tokenizer(tokenizer_file)
    texts = ["To be, or not to be", "def f(x): return x"]
    docs = [_doc(f"c{i}", t, "code") for i, t in enumerate(texts)]
    code = _manifest(storage, "code", docs, DOCUMENT_SCHEMA)
    index = index_targets(storage, {"code": code}, tok, seed=0)
    expected = [len(tok.encode(t, add_special_tokens=False).ids) + 1 for t in texts]
    assert index.tokens.tolist() == expected == count_tokens(tok, texts).tolist()
    reversed_rows = np.array([1, 0])
    assert index.rows.count_tokens(storage, tok, reversed_rows).tolist() == expected[::-1]
    news = ShardManifest(asset="news", shards=code.shards)
    with pytest.raises(ValueError, match="target 'news'.*'code'"):
        index_targets(storage, {"news": news}, tok, seed=0)
