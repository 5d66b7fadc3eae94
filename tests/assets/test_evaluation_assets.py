"""The evaluation assets' own logic: the refusal classifier's materialization, how a
checkpoint is asked, the optional lm-evaluation-harness, and metadata that never shows an
unmeasured metric as 0."""

from __future__ import annotations

import json
from pathlib import Path

from dagster import materialize

from llmstack_dagster.assets.evaluation import (
    SafetyEvalAssetConfig,
    eval_mode,
    lm_eval_outcome,
    metric_rows,
    refusal_classifier,
    sample_rows,
)
from llmstack_dagster.core.storage import Storage, read_manifest
from llmstack_dagster.resources.storage import StorageResource


def test_refusal_classifier_beats_string_match_and_is_reused(tmp_path: Path) -> None:
    resources = {"storage": StorageResource(root=str(tmp_path))}
    first = materialize([refusal_classifier], resources=resources)
    report = read_manifest(Storage(str(tmp_path)), "refusal_classifier", None).extra["report"]
    for model in ("gpt4", "llama2orig"):
        row = report["per_model"][model]
        assert row["classifier"] > row["string_match"], (model, row)
    (event,) = first.get_asset_materialization_events()
    assert "| gpt4 |" in event.materialization.metadata["agreement"].value
    version = read_manifest(Storage(str(tmp_path)), "refusal_classifier", None).version
    materialize([refusal_classifier], resources=resources)  # same inputs: nothing rewritten
    assert read_manifest(Storage(str(tmp_path)), "refusal_classifier", None).version == version


def test_sft_and_instruct_imports_are_asked_through_their_chat_template(tmp_path: Path) -> None:
    ours = tmp_path / "ours" / "tokenizer.json"
    imported = tmp_path / "import" / "tokenizer.json"
    base_import = tmp_path / "base" / "tokenizer.json"
    for path in (ours, imported, base_import):
        path.parent.mkdir()
        path.write_text("{}")
    (imported.parent / "tokenizer_config.json").write_text(json.dumps({"chat_template": "x"}))
    (base_import.parent / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    assert eval_mode("base", ours, "auto") == "continuation"
    assert eval_mode("midtrained", ours, "auto") == "continuation"
    assert eval_mode("sft", ours, "auto") == "chat"
    assert eval_mode("base", imported, "auto") == "chat"
    assert eval_mode("base", base_import, "auto") == "continuation"
    assert eval_mode("sft", ours, "continuation") == "continuation"


def test_lm_eval_is_skipped_with_a_reason(tmp_path: Path) -> None:
    none = lm_eval_outcome(SafetyEvalAssetConfig(), tmp_path / "hf", str(tmp_path / "out"))
    assert (none.status, none.message) == ("skipped", "no lm-eval tasks configured")
    tasks = SafetyEvalAssetConfig(lm_eval_tasks=["hellaswag"])
    missing = lm_eval_outcome(tasks, None, str(tmp_path / "out"))
    assert missing.status == "skipped" and "no local Hugging Face export" in missing.message


def test_metadata_shows_unmeasured_as_a_dash_and_samples_per_set() -> None:
    rows = metric_rows({"gsm8k/exact_match": 0.0, "humaneval/pass@1": None})
    assert rows == [{"metric": "gsm8k/exact_match", "value": 0.0},
                    {"metric": "humaneval/pass@1", "value": "–"}]  # fmt: skip
    generations = [
        {"set": s, "id": f"{s}-{i}", "prompt": "p", "generation": "g", "score": 0.1, "flag": False}
        for s in ("rtp", "harmbench") for i in range(5)
    ]  # fmt: skip
    assert [r["id"] for r in sample_rows(generations)] == ["rtp-0", "rtp-1", "harmbench-0",
                                                           "harmbench-1"]  # fmt: skip
