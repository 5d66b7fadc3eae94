"""``trace_document`` and ``llmstack why`` on a small real pipeline: ingestion, dedup, DSIR,
mixture and token shards run by the core functions; quality decisions and checkpoints are
written through the storage API (scoring would need a trained KenLM model)."""

from __future__ import annotations

import argparse
import json
import posixpath
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from support.documents import write_jsonl

from llmstack_dagster.core.curation.dedup.clusters import find_duplicate_clusters
from llmstack_dagster.core.curation.dedup.config import DedupConfig
from llmstack_dagster.core.curation.dedup.fingerprints import compute_fingerprints
from llmstack_dagster.core.curation.dedup.removal import apply_removals
from llmstack_dagster.core.curation.ingest import ingest_domain
from llmstack_dagster.core.curation.quality.scoring import KEPT_SCHEMA, SCORED_SCHEMA
from llmstack_dagster.core.curation.selection.dsir import DSIRConfig, fit_dsir_target, select_dsir
from llmstack_dagster.core.curation.selection.mixture import materialize_mixture
from llmstack_dagster.core.curation.selection.mixture_plan import MixtureConfig
from llmstack_dagster.core.curation.sources import DomainConfig
from llmstack_dagster.core.lineage import DocumentTrace, format_trace, trace_document
from llmstack_dagster.core.schema import DROP_SCHEMA, make_drop
from llmstack_dagster.core.storage import (
    ShardManifest,
    ShardWriter,
    Storage,
    iter_shard_tables,
    read_manifest,
    write_manifest,
    write_version,
)
from llmstack_dagster.core.training.checkpoint import CheckpointMeta
from llmstack_dagster.core.training.token_shards import (
    TokenShardConfig,
    TokenShardIndex,
    manifest_hash,
    run_token_shards,
)
from llmstack_dagster.core.training.tokenizer import (
    TokenizerConfig,
    save_tokenizer,
    train_tokenizer,
)
from llmstack_dagster.lineage_cli import add_why_command

DOMAINS = ("web", "wiki")
QUALITY_DROP = "gen/doc-5"  # dropped by the (written) quality decision
SHORT = "gen/short-1"  # too short for DSIR's min_example_length
EXTRA_RECORDS = [
    {"id": "short-1", "text": "a short note", "created": "2021-02-01T00:00:00Z"},
    {"id": "bad-1", "text": "a record from the far future", "created": "9999-12-31T23:59:59-05:00"},
]


def _web_corpus(folder: Path) -> Path:
    path = write_jsonl(folder / "web.jsonl", 20)
    first = json.loads(path.read_text().splitlines()[0])
    copy = {**first, "id": "copy-0", "created": "2022-06-01T00:00:00Z"}  # newer: doc-0 is kept
    with open(path, "a", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in [copy, *EXTRA_RECORDS])
    return path


def _source(name: str, path: Path) -> DomainConfig:
    source = {
        "name": name,
        "kind": "jsonl",
        "paths": [str(path)],
        "fields": {"text": "text", "id": "id", "created": "created"},
    }
    return DomainConfig.model_validate({"sources": [source]})


def _decide(row: dict, i: int) -> tuple[dict, list[str]]:
    """The written scores and failed reasons of one document: only QUALITY_DROP fails."""
    bad = row["id"] == QUALITY_DROP
    scores = {
        "rule_set": "prose",
        "perplexity": 9000.0 if bad else 100.0 + i,
        "ccnet_bucket": "tail" if bad else "head",
    }
    return scores, ["word_count", "perplexity"] if bad else []


def _write_quality(storage: Storage, documents: ShardManifest, domain: str) -> ShardManifest:
    """A quality_scored version as score_quality writes it: scored, kept and drop shards."""
    with write_version(storage, "quality_scored", domain, f"test-{domain}") as version:
        scored = ShardWriter(storage, version.path("scored"), SCORED_SCHEMA)
        kept = ShardWriter(storage, version.path("kept"), KEPT_SCHEMA)
        drops = ShardWriter(storage, version.path("drops"), DROP_SCHEMA, prefix="drops")
        for _, table in iter_shard_tables(storage, documents.shards):
            for i, row in enumerate(table.to_pylist()):
                scores, reasons = _decide(row, i)
                decision = {"preset": "general", "keep": not reasons, "reasons": reasons}
                scored.write_row({**row, **scores, **decision})
                if not reasons:
                    kept.write_row({**row, **scores})
                    continue
                drops.write_row(
                    make_drop(stage="quality_scored", domain=domain, reason=reasons[0],
                              source=row["source"], id=row["id"], detail=json.dumps(reasons),
                              sample=row["text"])
                )  # fmt: skip
        scored_shards = [s.model_dump() for s in scored.close()]
        manifest = ShardManifest(
            asset="quality_scored",
            partition=domain,
            shards=kept.close(),
            drops=drops.close(),
            extra={"scored_shards": scored_shards},
        )
        return version.commit(manifest)


def _write_checkpoint(storage: Storage, step: int, data_version: str, complete: bool) -> None:
    folder = f"pretrained_checkpoint/runs/0123456789abcdef/checkpoints/step_{step:08d}"
    meta = CheckpointMeta(
        step=step,
        tokens_seen=step * 1024,
        model={},
        train_config={},
        data_version=data_version,
        code_version="test",
    )
    storage.write_bytes(posixpath.join(folder, "meta.json"), meta.model_dump_json().encode())
    if complete:
        storage.write_bytes(posixpath.join(folder, "COMPLETE"), b'{"step": %d}' % step)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Storage:
    """The pipeline from ingestion to token shards and three checkpoints."""
    tmp = tmp_path_factory.mktemp("lineage")
    storage = Storage(str(tmp / "store"))
    corpora = {
        "web": _source("gen", _web_corpus(tmp)),
        "wiki": _source("ref", write_jsonl(tmp / "wiki.jsonl", 10, prefix="ref", seed=1)),
    }
    dedup = DedupConfig()
    raw = {d: ingest_domain(storage, d, corpora[d]) for d in DOMAINS}
    prints = {d: compute_fingerprints(storage, raw[d], d, dedup) for d in DOMAINS}
    clusters = find_duplicate_clusters(storage, prints, dedup)
    deduped = {d: apply_removals(storage, raw[d], clusters, d, dedup) for d in DOMAINS}
    quality = {d: _write_quality(storage, deduped[d], d) for d in DOMAINS}
    dsir = DSIRConfig(
        keep_fraction=1.0, num_buckets=1000, min_example_length=5, target_domains=["wiki"]
    )
    target = fit_dsir_target(storage, {"wiki": quality["wiki"]}, dsir)
    selected = {d: select_dsir(storage, quality[d], d, target, dsir) for d in DOMAINS}
    mixture = materialize_mixture(
        storage, selected, MixtureConfig(token_budget=10**9, max_epochs=2.0, shard_rows=16)
    )
    texts = (
        t
        for _, table in iter_shard_tables(storage, mixture.shards, ["text"])
        for t in table["text"].to_pylist()
    )
    tokenizer = save_tokenizer(
        train_tokenizer(texts, TokenizerConfig(vocab_size=300, min_frequency=1)), tmp / "tok"
    )
    config = TokenShardConfig(val_fraction=0.2, min_val_docs=1)
    tokens = run_token_shards(
        storage, mixture, tokenizer, config, mixture_hash=manifest_hash(mixture)
    )
    _write_checkpoint(storage, 10, "an-older-data-version", complete=True)
    _write_checkpoint(storage, 20, str(tokens.content_version), complete=True)
    _write_checkpoint(storage, 30, str(tokens.content_version), complete=False)
    return storage


def _decisions(trace: DocumentTrace) -> list[tuple[str, str | None, str, str | None]]:
    return [(s.stage, s.partition, s.decision, s.reason) for s in trace.stages]


def test_a_kept_document_reaches_the_checkpoint(store: Storage) -> None:
    trace = trace_document(store, "gen/doc-0")
    assert trace.found and trace.domain == "web"
    assert _decisions(trace) == [
        ("raw_documents", "web", "kept", None),
        ("document_fingerprints", "web", "kept", None),
        ("duplicate_clusters", None, "kept", None),
        ("deduplicated_documents", "web", "kept", None),
        ("quality_scored", "web", "kept", None),
        ("dsir_selected", "web", "kept", None),
        ("sampled_mixture", None, "kept", None),
        ("tokenized_shards", None, "kept", None),
    ]
    for stage in trace.stages:
        assert stage.version == read_manifest(store, stage.stage, stage.partition).version
    details = {s.stage: s.detail for s in trace.stages}
    assert details["duplicate_clusters"] == "oldest copy, kept; removed: gen/copy-0"
    assert details["quality_scored"] == "perplexity=100.0 bucket=head"
    assert details["dsir_selected"].startswith("dsir_log_weight=")
    assert [(c.id, c.epoch) for c in trace.mixture_copies] == [
        ("gen/doc-0", 1),
        ("gen/doc-0#epoch2", 2),
    ]
    tokens = read_manifest(store, "tokenized_shards", None)
    assert trace.data_version == tokens.content_version is not None
    assert {c.split for c in trace.mixture_copies} <= {"train", "val"}
    assert trace.split_note is None
    assert [c.path for c in trace.checkpoints] == [
        "pretrained_checkpoint/runs/0123456789abcdef/checkpoints/step_00000020"
    ]
    assert trace.checkpoints[0].step == 20 and trace.other_checkpoints == 1
    text = format_trace(trace)
    assert text.startswith("gen/doc-0 (domain web): kept through tokenized_shards; in 1 checkpoint")
    assert "gen/doc-0#epoch2  epoch 2" in text and "step_00000020  step 20" in text


def test_an_exact_duplicate_names_the_kept_copy(store: Storage) -> None:
    trace = trace_document(store, "gen/copy-0")
    assert _decisions(trace) == [
        ("raw_documents", "web", "kept", None),
        ("document_fingerprints", "web", "kept", None),
        ("duplicate_clusters", None, "dropped", "exact_duplicate_of"),
        ("deduplicated_documents", "web", "dropped", "exact_duplicate"),
    ]
    assert trace.duplicate_of == "gen/doc-0"
    assert trace.stages[2].detail == "kept web:gen/doc-0 jaccard=1.000 cluster=0"
    assert trace.stages[3].detail == "exact_duplicate_of web:gen/doc-0 jaccard=1.000 cluster=0"
    assert not trace.mixture_copies and not trace.checkpoints and trace.data_version is None
    summary = format_trace(trace).splitlines()[0]
    assert summary == (
        "gen/copy-0 (domain web): dropped at deduplicated_documents: exact_duplicate "
        "(duplicate of gen/doc-0)"
    )


def test_a_quarantined_record_stops_at_ingestion(store: Storage) -> None:
    trace = trace_document(store, "gen/bad-1")
    assert _decisions(trace) == [("raw_documents", "web", "dropped", "invalid_created")]
    assert "9999-12-31" in str(trace.stages[0].detail)


def test_later_stages_name_their_reason(store: Storage) -> None:
    quality = trace_document(store, QUALITY_DROP)
    assert _decisions(quality)[-1] == ("quality_scored", "web", "dropped", "word_count")
    assert len(quality.stages) == 5
    assert quality.final is not None
    assert quality.final.detail == "failed word_count, perplexity; perplexity=9000.0 bucket=tail"
    short = trace_document(store, SHORT)
    assert _decisions(short)[-1] == ("dsir_selected", "web", "dropped", "dsir_too_short")
    assert "dsir_log_weight" in json.loads(str(short.stages[-1].detail))


def test_a_mixture_copy_id_traces_its_original(store: Storage) -> None:
    trace = trace_document(store, "ref/ref-3#epoch2")
    assert trace.doc_id == "ref/ref-3" and trace.domain == "wiki"
    assert [c.id for c in trace.mixture_copies] == ["ref/ref-3", "ref/ref-3#epoch2"]


def test_an_unknown_id_is_found_nowhere(store: Storage) -> None:
    trace = trace_document(store, "gen/no-such-doc")
    assert not trace.found
    assert _decisions(trace) == [("raw_documents", "web", "absent", None)]
    unmapped = trace_document(store, "elsewhere/1")
    assert [s.partition for s in unmapped.stages] == ["web", "wiki"]
    lines = format_trace(unmapped).splitlines()
    assert lines[0] == "elsewhere/1: not found in any stage" and len(lines) == 3
    assert lines[2].split()[:3] == ["raw_documents", "wiki", "absent"]


def test_the_recorded_validation_ids_give_each_copy_its_split(
    store: Storage, tmp_path: Path
) -> None:
    """The token shards list their validation ids: the traced splits add up to the index, and
    without the list the split is reported unknown."""
    shutil.copytree(str(store.local_path("")), tmp_path / "copy")
    copy = Storage(str(tmp_path / "copy"))
    tokens = read_manifest(copy, "tokenized_shards", None)
    index = TokenShardIndex.model_validate(copy.read_json(tokens.extra["index"]))
    mixture = read_manifest(copy, "sampled_mixture", None)
    ids = {
        i.split("#")[0]
        for _, t in iter_shard_tables(copy, mixture.shards, ["id", "domain"])
        for i, d in zip(t["id"].to_pylist(), t["domain"].to_pylist(), strict=True)
        if d == "web"
    }
    splits = [c.split for i in sorted(ids) for c in trace_document(copy, i).mixture_copies]
    assert splits.count("val") == index.domains["web"].val_docs > 0
    assert splits.count("train") == index.domains["web"].train_docs > 0
    assert trace_document(copy, "gen/doc-0").split_note is None
    extra = {k: v for k, v in tokens.extra.items() if k != "val_ids"}
    write_manifest(copy, tokens.model_copy(update={"extra": extra}))
    unknown = trace_document(copy, "gen/doc-0")
    assert {c.split for c in unknown.mixture_copies} == {"unknown"}
    assert "unknown" in str(unknown.split_note)


def _why(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="llmstack")
    add_why_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["why", *argv])
    return args.handler(args)


def test_why_prints_the_trace(store: Storage, capsys: pytest.CaptureFixture[str]) -> None:
    assert _why("gen/copy-0", "--root", store.root) == 0
    out = capsys.readouterr().out
    assert out.startswith("gen/copy-0 (domain web): dropped at deduplicated_documents")
    assert "exact_duplicate_of web:gen/doc-0" in out
    assert _why("gen/doc-0", "--root", store.root, "--json") == 0
    printed = DocumentTrace.model_validate_json(capsys.readouterr().out)
    assert printed == trace_document(store, "gen/doc-0")


def test_why_fails_for_an_id_in_no_stage(
    store: Storage, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _why("gen/no-such-doc", "--root", store.root) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"gen/no-such-doc: in no stage under {store.root} "
        "(raw_documents partitions searched: web)\n"
    )
    assert _why("gen/doc-0", "--root", store.root, "--domain", "wiki") == 1


def test_the_trace_never_reads_texts(store: Storage, monkeypatch) -> None:
    """Every shard is read by named columns (the id first), never whole and never its text."""
    reads: list[list[str] | None] = []
    original = Storage.read_table

    def spy(self: Storage, rel: str, columns: list[str] | None = None) -> pa.Table:
        reads.append(columns)
        return original(self, rel, columns)

    monkeypatch.setattr(Storage, "read_table", spy)
    assert trace_document(store, "gen/doc-7").checkpoints
    assert reads and all(columns and "text" not in columns for columns in reads)
