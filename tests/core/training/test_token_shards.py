from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from support.resume import FailOnce
from support.training_data import assert_same_output

from llmstack_dagster.core.scale.shard_map import LocalShardMap
from llmstack_dagster.core.schema import DOCUMENT_SCHEMA, documents_table, make_document
from llmstack_dagster.core.storage import ShardManifest, ShardWriter, read_manifest
from llmstack_dagster.core.training import token_shards
from llmstack_dagster.core.training.token_shards import (
    TokenShardConfig,
    load_token_index,
    read_tokens,
    run_token_shards,
    token_dtype,
)
from llmstack_dagster.core.training.tokenizer import load_tokenizer


def test_dtype_choice() -> None:
    assert token_dtype(512) == np.uint16
    assert token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32


def test_index_matches_files_and_eos_separates_documents(corpus, token_data: Path) -> None:
    storage, manifest = corpus
    index = load_token_index(token_data)
    assert index.dtype == "uint16" and index.vocab_size == 512
    assert index.date_min.month == 1 and index.date_max.month == 3
    tok = load_tokenizer(token_data / "tokenizer.json")
    for shard in index.shards:
        tokens = read_tokens(token_data, index, shard)
        assert (token_data / shard.path).stat().st_size == shard.tokens * 2
        assert int((tokens == index.eos_id).sum()) == shard.docs
        assert tokens[-1] == index.eos_id
    # splitting every shard at EOS gives back exactly the documents' token sequences
    docs = [row for s in manifest.shards for row in storage.read_table(s.path).to_pylist()]
    expected = Counter(tuple(tok.encode(d["text"], add_special_tokens=False).ids) for d in docs)
    found: Counter = Counter()
    for shard in index.shards:
        tokens = read_tokens(token_data, index, shard).tolist()
        ends = [i for i, t in enumerate(tokens) if t == index.eos_id]
        found.update(tuple(tokens[a + 1 : b]) for a, b in zip([-1, *ends[:-1]], ends, strict=True))
    assert found == expected


def test_every_domain_has_a_val_split(token_data: Path) -> None:
    index = load_token_index(token_data)
    assert set(index.domains) == {"books", "code", "news"}
    for domain, stats in index.domains.items():
        val = index.split_shards("val", domain)
        assert val and sum(s.docs for s in val) == stats.val_docs >= 2
        assert sum(s.tokens for s in val) == stats.val_tokens
        assert stats.train_docs > stats.val_docs
    assert len(index.split_shards("train")) > 1  # bounded shards


def test_two_local_workers_give_identical_output(corpus, tokenizer_file, token_data) -> None:
    storage, manifest = corpus
    config = TokenShardConfig(val_fraction=0.1, docs_per_task=16, max_tokens_per_shard=60_000)
    result = run_token_shards(storage, manifest, tokenizer_file, config,
                              asset="tokenized_parallel", shard_map=LocalShardMap(2))  # fmt: skip
    assert_same_output(Path(storage.local_path(result.folder)), token_data)
    written = read_manifest(storage, "tokenized_parallel", None)
    assert written.counts["documents"] == sum(s.rows for s in manifest.shards)


def test_a_single_document_domain_keeps_its_training_tokens(corpus, tokenizer_file, caplog) -> None:
    storage, manifest = corpus
    rows = [row for s in manifest.shards for row in storage.read_table(s.path).to_pylist()]
    day = datetime(2024, 4, 1, tzinfo=UTC)
    lone = make_document(
        id="arxiv/1", text=rows[0]["text"], domain="academic", source="arxiv", created=day
    )
    pair = [
        make_document(
            id=f"wiki/{i}", text=rows[i]["text"], domain="wiki", source="wiki", created=day
        )
        for i in (1, 2)
    ]
    writer = ShardWriter(storage, "mixture/few", DOCUMENT_SCHEMA, max_rows=200)
    writer.write_table(documents_table([lone, *rows, *pair]))
    few = ShardManifest(asset="mixture", partition="few", shards=writer.close())
    config = TokenShardConfig(val_fraction=0.5, min_val_docs=2)
    result = run_token_shards(storage, few, tokenizer_file, config, asset="tokenized_few")
    index = load_token_index(Path(storage.local_path(result.folder)))
    academic, wiki = index.domains["academic"], index.domains["wiki"]
    # the only document stays in training: no val split for this domain, and a flag
    assert (academic.train_docs, academic.val_docs) == (1, 0) and academic.train_tokens > 0
    assert not index.split_shards("val", "academic")
    assert (wiki.train_docs, wiki.val_docs) == (1, 1)
    assert academic.few_docs and wiki.few_docs
    assert not any(index.domains[d].few_docs for d in ("books", "code", "news"))
    assert all(d.train_docs > 0 for d in index.domains.values())
    assert [w.split("'")[1] for w in index.warnings] == ["academic", "wiki"]
    assert result.extra["warnings"] == index.warnings
    assert "academic" in caplog.text


def test_a_retry_encodes_only_the_shards_its_run_did_not(
    corpus, tokenizer_file, token_data, monkeypatch
) -> None:
    storage, manifest = corpus
    config = TokenShardConfig(val_fraction=0.1, max_tokens_per_shard=60_000)
    spy = FailOnce(token_shards.encode_shard)
    monkeypatch.setattr(token_shards, "encode_shard", spy)
    calls = {}
    for asset, keys in (("tokenized_other_run", ("A", "B")), ("tokenized_same_run", ("A", "A"))):
        spy.calls, spy.armed = 0, True
        with pytest.raises(RuntimeError, match="killed"):
            run_token_shards(storage, manifest, tokenizer_file, config, asset, resume_key=keys[0])
        spy.retry()
        result = run_token_shards(storage, manifest, tokenizer_file, config, asset,
                                  resume_key=keys[1])  # fmt: skip
        assert_same_output(Path(storage.local_path(result.folder)), token_data)
        calls[asset] = spy.calls
    n = len(manifest.shards)
    assert n > 1 and calls == {"tokenized_other_run": n, "tokenized_same_run": n - 1}
