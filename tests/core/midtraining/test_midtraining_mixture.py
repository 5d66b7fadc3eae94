"""The midtraining mixture built from real documents: a pretraining mixture with repeated
copies, its token shards' validation ids, and the ``code`` domain as the target."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import ValidationError
from support.resume import FailOnce
from support.training_data import sample_documents
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from llmstack_dagster.core.curation.selection.mixture import materialize_mixture
from llmstack_dagster.core.curation.selection.mixture_plan import MixtureConfig
from llmstack_dagster.core.midtraining import mixture as mixture_module
from llmstack_dagster.core.midtraining.mixture import (
    MidtrainingMixtureConfig,
    build_midtraining_mixture,
)
from llmstack_dagster.core.midtraining.sources import original_id
from llmstack_dagster.core.schema import DOCUMENT_SCHEMA, documents_table
from llmstack_dagster.core.storage import (
    ShardInfo,
    ShardManifest,
    ShardWriter,
    Storage,
    current_manifest,
    iter_shard_tables,
)
from llmstack_dagster.core.training import token_shards
from llmstack_dagster.core.training.token_shards import (
    TokenShardConfig,
    TokenShardIndex,
    load_token_index,
    read_tokens,
    run_token_shards,
)
from llmstack_dagster.core.training.tokenizer import load_tokenizer, save_tokenizer


@dataclass
class Pretraining:
    storage: Storage
    selected: dict[str, ShardManifest]  # dsir_selected per domain
    mixture: ShardManifest  # sampled_mixture, with repeated copies
    tokens: ShardManifest  # its token shards (val_ids.parquet)
    tokenizer: Path


def _write(storage: Storage, rows: list[dict], partition: str) -> ShardManifest:
    writer = ShardWriter(storage, f"dsir_selected/{partition}/data", DOCUMENT_SCHEMA, max_rows=25)
    writer.write_table(documents_table(rows))
    return ShardManifest(
        asset="dsir_selected",
        partition=partition,
        shards=writer.close(),
        content_version=f"selected-{partition}",
    )


@pytest.fixture(scope="module")
def pretraining(shared_data, tokenizer_file, tmp_path_factory) -> Pretraining:
    storage = Storage(str(tmp_path_factory.mktemp("midtraining")))
    docs = sample_documents(shared_data)
    selected = {
        d: _write(storage, [r for r in docs if r["domain"] == d], d)
        for d in sorted({r["domain"] for r in docs})
    }
    mixture = materialize_mixture(
        storage, selected, MixtureConfig(token_budget=10**6, max_epochs=2.0, shard_rows=40)
    )
    tokens = run_token_shards(storage, mixture, tokenizer_file, TokenShardConfig(val_fraction=0.1))
    return Pretraining(storage, selected, mixture, tokens, tokenizer_file)


def _config(**overrides) -> MidtrainingMixtureConfig:
    settings = {
        "target_domains": ["code"],
        "token_budget": 150_000,
        "replay_fraction": 0.2,
        "max_tokens_per_shard": 20_000,
        "shard_rows": 40,
    }
    return MidtrainingMixtureConfig.model_validate(settings | overrides)


def _build(
    p: Pretraining,
    asset: str = "midtraining_mixture",
    targets: dict[str, ShardManifest] | None = None,
    tokenizer: Path | None = None,
    resume_key: str | None = None,
    **config: object,
) -> ShardManifest:
    return build_midtraining_mixture(
        p.storage,
        targets=targets or {"code": p.selected["code"]},
        replay=p.mixture,
        pretrain_val_ids=p.tokens,
        tokenizer_path=tokenizer or p.tokenizer,
        config=_config(**config),
        asset=asset,
        resume_key=resume_key,
    )


@pytest.fixture(scope="module")
def midtrained(pretraining: Pretraining) -> ShardManifest:
    return _build(pretraining)


def _folder(p: Pretraining, manifest: ShardManifest) -> Path:
    return Path(p.storage.local_path(manifest.folder))


def _rows(storage: Storage, shards: list[ShardInfo]) -> list[dict]:
    return [row for _, table in iter_shard_tables(storage, shards) for row in table.to_pylist()]


def _text_rows(p: Pretraining, manifest: ShardManifest, prefix: str) -> list[dict]:
    folder = manifest.extra["text_mixture"]
    return [
        row
        for path in p.storage.list(folder, ".parquet")
        if path.rsplit("/", 1)[1].startswith(prefix)
        for row in p.storage.read_table(path).to_pylist()
    ]


def _documents(folder: Path, index: TokenShardIndex, split: str) -> list[tuple]:
    """The token sequences of the documents in a split (EOS separates them)."""
    docs = []
    for shard in index.split_shards(split):
        tokens = read_tokens(folder, index, shard).tolist()
        ends = [i for i, t in enumerate(tokens) if t == index.eos_id]
        docs += [tuple(tokens[a + 1 : b]) for a, b in zip([-1, *ends[:-1]], ends, strict=True)]
    return docs


def _longest(p: Pretraining, tokenizer: Path) -> int:
    """The most tokens of any replay row (EOS included): the sampling's rounding bound."""
    tok = load_tokenizer(tokenizer)
    texts = [r["text"] for r in _rows(p.storage, p.mixture.shards)]
    return max(len(e.ids) + 1 for e in tok.encode_batch(texts, add_special_tokens=False))


def _assert_replay_fraction(p: Pretraining, extra: dict, tokenizer: Path, fraction: float) -> None:
    """The replay is within one document's tokens of its share of the target tokens."""
    target, replay = extra["target_tokens"], extra["replay_tokens"]
    longest = _longest(p, tokenizer)
    assert abs(replay - target * fraction / (1 - fraction)) <= longest
    assert abs(extra["realized_replay_fraction"] - fraction) <= longest / (target + replay)


def _pretraining_val(p: Pretraining) -> dict[str, dict]:
    """The pretraining validation documents by original id (each once)."""
    val_ids = set(p.storage.read_table(p.tokens.extra["val_ids"]).column("id").to_pylist())
    return {
        original_id(r["id"], r["mixture_epoch"]): r
        for r in _rows(p.storage, p.mixture.shards)
        if r["id"] in val_ids
    }


def test_replay_fraction_and_target_budget_within_one_document(pretraining, midtrained) -> None:
    extra = midtrained.extra
    target, replay = extra["target_tokens"], extra["replay_tokens"]
    assert abs(target - extra["target_budget"]) <= _longest(pretraining, pretraining.tokenizer)
    _assert_replay_fraction(pretraining, extra, pretraining.tokenizer, 0.2)
    assert extra["train_tokens"] == target + replay == midtrained.counts["train_tokens"]
    assert extra["target_shortfall"] == 0 and extra["warnings"] == []
    assert 1 < extra["target_epochs"] <= 4
    shares = [r["share"] for r in extra["composition"] if r["split"] == "train"]
    assert sum(shares) == pytest.approx(1.0)
    assert "| train | target | code |" in extra["composition_markdown"]


def test_every_row_is_accounted_for(pretraining, midtrained) -> None:
    inputs = midtrained.extra["inputs"]
    assert inputs["target:code"]["read"] == pretraining.selected["code"].rows
    assert inputs["replay"]["read"] == pretraining.mixture.rows
    for tally in inputs.values():
        assert tally["read"] == tally["train"] + tally["val"] + sum(tally["dropped"].values())
    counts = midtrained.counts
    assert counts["in"] == counts["kept"] + counts["dropped"]
    drops = Counter(r["reason"] for r in _rows(pretraining.storage, midtrained.drops))
    assert sum(drops.values()) == counts["dropped"]
    assert all(counts[reason] == n for reason, n in drops.items())
    assert set(drops) == {"not_sampled", "pretraining_val", "target_heldout"}


def test_no_validation_document_trains(pretraining, midtrained) -> None:
    folder = _folder(pretraining, midtrained)
    index = load_token_index(folder)
    tok = load_tokenizer(pretraining.tokenizer)
    trained = set(_documents(folder, index, "train"))
    pretrain_val = _pretraining_val(pretraining)
    heldout = [
        r for r in _text_rows(pretraining, midtrained, "val") if r["domain"] == "code_target"
    ]
    assert len(heldout) >= 2
    for row in [*pretrain_val.values(), *heldout]:
        assert tuple(tok.encode(row["text"], add_special_tokens=False).ids) not in trained
    val_ids = pretraining.storage.read_table(midtrained.extra["val_ids"]).column("id").to_pylist()
    assert sorted(val_ids) == sorted([*pretrain_val, *(r["id"] for r in heldout)])


def test_val_holds_every_pretraining_domain_and_the_target_heldout(pretraining, midtrained):
    index = load_token_index(_folder(pretraining, midtrained))
    per_domain = Counter(r["domain"] for r in _pretraining_val(pretraining).values())
    assert set(per_domain) == {"books", "code", "news"}
    for domain, n in per_domain.items():
        assert index.domains[domain].val_docs == n and index.split_shards("val", domain)
    target = index.domains["code_target"]
    assert target.val_docs >= 2 and target.train_docs == 0
    sources = {
        r["domain"]: r["source"] for r in midtrained.extra["composition"] if r["split"] == "val"
    }
    assert sources == {
        "books": "pretraining_val",
        "code": "pretraining_val",
        "news": "pretraining_val",
        "code_target": "target_heldout",
    }


def test_train_order_interleaves_replay_and_target_epochs_follow_each_other(
    pretraining, midtrained
) -> None:
    train = _text_rows(pretraining, midtrained, "train")
    origins = [r["midtraining_origin"] for r in train]
    half = len(origins) // 2
    assert "replay" in origins[:half] and "replay" in origins[half:]
    epoch = [int(r["id"].rsplit("#epoch", 1)[1]) if "#epoch" in r["id"] else 1 for r in train]
    target = [i for i, o in enumerate(origins) if o == "target"]
    first = [i for i in target if epoch[i] == 1]
    second = [i for i in target if epoch[i] == 2]
    assert max(first) < min(second)  # the whole first epoch comes before the second one


def test_deterministic_and_idempotent(pretraining, midtrained) -> None:
    again = _build(pretraining)
    assert again.version == midtrained.version  # same inputs: nothing rebuilt
    copy = _build(pretraining, asset="midtraining_copy")
    other = _build(pretraining, asset="midtraining_seed1", seed=1)
    folders = [_folder(pretraining, m) for m in (midtrained, copy, other)]
    indexes = [load_token_index(f) for f in folders]
    train = [
        b"".join((f / s.path).read_bytes() for s in i.split_shards("train"))
        for f, i in zip(folders, indexes, strict=True)
    ]
    assert train[0] == train[1] and train[0] != train[2]
    assert indexes[0].shards == indexes[1].shards


def test_a_failed_run_leaves_the_last_version(pretraining, midtrained, monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(mixture_module, "write_token_shards", fail)
    with pytest.raises(RuntimeError, match="killed"):
        _build(pretraining, seed=7)
    current = current_manifest(pretraining.storage, "midtraining_mixture", None)
    assert current == midtrained
    assert pretraining.storage.entries("midtraining_mixture") == [
        "manifest.json",
        midtrained.version,
    ]


def _train_bytes(p: Pretraining, manifest: ShardManifest) -> bytes:
    folder = _folder(p, manifest)
    index = load_token_index(folder)
    return b"".join((folder / s.path).read_bytes() for s in index.split_shards("train"))


def test_a_retry_encodes_only_the_text_shards_its_run_did_not(
    pretraining, midtrained, monkeypatch
) -> None:
    spy = FailOnce(token_shards.encode_shard)
    monkeypatch.setattr(token_shards, "encode_shard", spy)
    with pytest.raises(RuntimeError, match="killed"):
        _build(pretraining, asset="midtraining_retry", resume_key="run-1")
    spy.retry()
    result = _build(pretraining, asset="midtraining_retry", resume_key="run-1")
    text_shards = pretraining.storage.list(result.extra["text_mixture"], ".parquet")
    assert len(text_shards) > 1 and spy.calls == len(text_shards) - 1
    assert _train_bytes(pretraining, result) == _train_bytes(pretraining, midtrained)
    assert load_token_index(_folder(pretraining, result)).shards == load_token_index(
        _folder(pretraining, midtrained)
    ).shards


def test_a_small_target_repeats_up_to_max_epochs_and_warns(pretraining) -> None:
    code = _rows(pretraining.storage, pretraining.selected["code"].shards)[:10]
    small = _write(pretraining.storage, code, "code_small")
    result = _build(pretraining, asset="midtraining_small", targets={"code": small}, min_val_docs=1)
    extra = result.extra
    assert extra["target_epochs"] == pytest.approx(4.0)
    assert extra["target_shortfall"] > 0 and extra["target_tokens"] < extra["target_budget"]
    assert any("shortfall" in w for w in extra["warnings"])
    (row,) = [r for r in extra["composition"] if r["source"] == "target"]
    assert row["rows"] == 4 * row["documents"] and row["epochs"] == pytest.approx(4.0)
    _assert_replay_fraction(pretraining, extra, pretraining.tokenizer, 0.2)


def _hf_style_tokenizer(texts: list[str], folder: Path) -> Path:
    """A byte-level BPE without our special tokens, and a tokenizer_config.json naming its EOS."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    path = save_tokenizer(tok, folder)
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|im_end|>"}))
    return path


def test_a_hugging_face_tokenizer_works(pretraining, tmp_path) -> None:
    texts = [r["text"] for r in _rows(pretraining.storage, pretraining.mixture.shards)]
    tokenizer = _hf_style_tokenizer(texts, tmp_path / "hf")
    result = _build(pretraining, asset="midtraining_hf", tokenizer=tokenizer)
    folder = _folder(pretraining, result)
    index = load_token_index(folder)
    assert index.eos_id == load_tokenizer(tokenizer).token_to_id("<|im_end|>") == 2
    for shard in index.shards:
        tokens = read_tokens(folder, index, shard)
        assert int((tokens == index.eos_id).sum()) == shard.docs and tokens[-1] == index.eos_id
    _assert_replay_fraction(pretraining, result.extra, tokenizer, 0.2)


def test_no_budget_or_no_target_documents_is_an_error(pretraining) -> None:
    with pytest.raises(ValidationError, match="token_budget"):
        _config(token_budget=0)
    with pytest.raises(ValidationError, match="replay_fraction"):
        _config(replay_fraction=1.0)
    empty = ShardManifest(asset="dsir_selected", partition="code", content_version="empty")
    with pytest.raises(ValueError, match="no target tokens to train on"):
        _build(pretraining, asset="midtraining_empty", targets={"code": empty})
    with pytest.raises(ValueError, match="do not match target_domains"):
        _build(pretraining, asset="midtraining_empty", targets={"books": empty})


def test_without_replay_the_pretraining_val_split_stays(pretraining) -> None:
    result = _build(pretraining, asset="midtraining_no_replay", replay_fraction=0.0)
    extra = result.extra
    assert extra["replay_tokens"] == 0 and extra["realized_replay_fraction"] == 0.0
    assert extra["inputs"]["replay"]["train"] == 0
    index = load_token_index(_folder(pretraining, result))
    assert {"books", "code", "news", "code_target"} <= {
        d for d, s in index.domains.items() if s.val_docs
    }
