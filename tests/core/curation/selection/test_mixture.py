import json
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest
from selection_docs import document_rows

from llmstack_dagster.core.curation.selection.composition import domain_rows
from llmstack_dagster.core.curation.selection.mixture import materialize_mixture
from llmstack_dagster.core.curation.selection.mixture_plan import MixtureConfig
from llmstack_dagster.core.curation.selection.temporal import TemporalConfig
from llmstack_dagster.core.storage import iter_shard_tables, read_manifest


@pytest.fixture
def selected(real_texts, shared_data, write_docs):
    code_rows = [
        json.loads(line)
        for line in (shared_data / "pretrain/code/code_sample.jsonl").read_text().splitlines()
    ]
    web = document_rows(real_texts["pile"] * 3, "web", "pile", quality_class=["high", "low"] * 750)
    news = document_rows(real_texts["news"] * 3, "news", "news")
    wiki = document_rows(real_texts["wiki"] * 3, "wiki", "wikibio")
    code = document_rows([r["text"] for r in code_rows] * 3, "code", "stdlib")
    for row, source in zip(code, code_rows * 3, strict=True):
        row["language"] = source["language"]
    return {
        name: write_docs(rows, "dsir_selected", name, 500)
        for name, rows in {"web": web, "news": news, "wiki": wiki, "code": code}.items()
    }


def _output(storage, manifest) -> pa.Table:
    return pa.concat_tables(t for _, t in iter_shard_tables(storage, manifest.shards))


def test_realized_composition_within_one_percent(storage, selected):
    # natural code share: every unit gets enough tokens for document granularity to stay < 1%
    config = MixtureConfig(token_budget=1_500_000, code_share=None, shard_rows=1000)
    manifest = materialize_mixture(storage, selected, config)
    for row in manifest.extra["composition"]:
        assert row["realized_tokens"] == pytest.approx(row["planned_tokens"], rel=0.01), row
        assert abs(row["realized_share"] - row["planned_share"]) < 0.01
    out = _output(storage, manifest)
    assert manifest.counts["in"] == manifest.counts["kept"] + manifest.counts["dropped"]
    assert manifest.dropped == manifest.counts["dropped"] > 0
    assert out.num_rows == manifest.counts["rows"] == manifest.counts["kept"]  # all <= 1 epoch
    assert out.column("id").to_pylist() != sorted(out.column("id").to_pylist())
    assert len(set(out.column("id").to_pylist())) == out.num_rows
    assert storage.read_bytes(f"{manifest.folder}/composition.png").startswith(b"\x89PNG")
    plan = storage.read_json(f"{manifest.folder}/plan.json")
    assert plan == manifest.extra["plan"]
    assert read_manifest(storage, "sampled_mixture", None) == manifest


def test_default_code_share_per_domain(storage, selected):
    # a budget the prose can fill (~840k prose tokens available): code is 10% of the mixture
    manifest = materialize_mixture(storage, selected, MixtureConfig(token_budget=800_000))
    assert manifest.extra["plan"]["unallocated_tokens"] == pytest.approx(0, abs=1)
    domains = {r["domain"]: r for r in domain_rows(manifest.extra["composition_buckets"])}
    assert set(domains) == {"web", "news", "wiki", "code"}
    assert domains["code"]["planned_share"] == pytest.approx(0.10)  # the seed's ~10% of code
    assert sum(r["planned_share"] for r in domains.values()) == pytest.approx(1.0)
    assert sum(r["realized_share"] for r in domains.values()) == pytest.approx(1.0)
    for row in domains.values():
        assert abs(row["realized_share"] - row["planned_share"]) < 0.01, row
    assert sum(r["realized_tokens"] for r in domains.values()) == pytest.approx(
        manifest.extra["realized_tokens"], abs=len(domains)
    )
    # a budget beyond the prose (every source at its epoch cap): code shrinks with the prose
    # and stays 10% of the planned mixture; the rest of the budget stays unallocated
    manifest = materialize_mixture(storage, selected, MixtureConfig(token_budget=1_500_000))
    plan = manifest.extra["plan"]
    code = sum(b["sampled_tokens"] for b in plan["buckets"] if b["domain"] == "code")
    prose = sum(b["sampled_tokens"] for b in plan["buckets"] if b["domain"] != "code")
    assert plan["unallocated_tokens"] > 0 and prose < 1_500_000 * 0.9
    assert code / (code + prose) == pytest.approx(0.10)
    assert plan["alpha_budget"] == pytest.approx(prose / 9)


def test_repeats_only_above_one_epoch(storage, selected):
    config = MixtureConfig(token_budget=4_000_000, code_share=0.8, shard_rows=1000)
    manifest = materialize_mixture(storage, selected, config)
    epochs = {u["unit"]: u["planned_epochs"] for u in manifest.extra["composition"]}
    assert max(epochs.values()) == pytest.approx(1.0)  # N = 1 caps every unit
    assert manifest.counts["repeated_rows"] == 0
    config = config.model_copy(update={"max_epochs": 3.0}, deep=True)
    manifest = materialize_mixture(storage, selected, config)
    epochs = {u["unit"]: u["planned_epochs"] for u in manifest.extra["composition"]}
    assert epochs["python"] > 1.0
    out = _output(storage, manifest).to_pylist()
    repeats = [r for r in out if r["mixture_epoch"] > 1]
    assert repeats

    def unit(row: dict) -> str:
        return row["language"] if row["domain"] == "code" else row["source"]

    assert all(epochs[unit(r)] > 1.0 for r in repeats)
    first = repeats[0]
    assert first["id"].endswith(f"#epoch{first['mixture_epoch']}")
    original = json.loads(first["metadata"])["original_id"]
    assert first["id"].startswith(original) and original in {r["id"] for r in out}
    assert all(r["mixture_epoch"] == 1 for r in out if epochs[unit(r)] <= 1.0)
    assert manifest.counts["repeated_rows"] == len(repeats)


def test_time_window_and_determinism(storage, selected):
    window = TemporalConfig(created_after=datetime(2021, 1, 1, tzinfo=UTC), half_life_days=90)
    config = MixtureConfig(token_budget=300_000, temporal=window, shard_rows=1000)
    manifest = materialize_mixture(storage, selected, config)
    out = _output(storage, manifest)
    created = out.column("created").to_pylist()
    assert min(created) >= datetime(2021, 1, 1, tzinfo=UTC)
    assert manifest.extra["plan"]["created_min"].startswith("2021-01-01")
    drops = pa.concat_tables(t for _, t in iter_shard_tables(storage, manifest.drops))
    reasons = set(drops.column("reason").to_pylist())
    assert reasons == {"not_sampled", "outside_time_window"}
    # recency: sampled documents are newer than the in-window documents left out
    left_out = [d for d in drops.to_pylist() if d["reason"] == "not_sampled"]
    assert left_out
    ids = out.column("id").to_pylist()
    again = materialize_mixture(storage, selected, config)
    assert _output(storage, again).column("id").to_pylist() == ids
    other = materialize_mixture(storage, selected, config.model_copy(update={"seed": 1}))
    assert _output(storage, other).column("id").to_pylist() != ids
    assert np.median([c.timestamp() for c in created]) > datetime(2021, 3, 1).timestamp()
