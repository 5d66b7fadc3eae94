"""The whole DAG, end to end, as ``llmstack demo`` runs it: a capped copy of the demo corpus
under the smallest profile, every asset materialized in dependency order."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dagster import DagsterEventType, DagsterInstance, MarkdownMetadataValue

from llmstack_dagster.core.curation.demo import demo_corpus
from llmstack_dagster.core.lineage import format_trace, trace_document
from llmstack_dagster.core.storage import Storage, read_manifest
from llmstack_dagster.core.training.init_weights import weights_digest

REPO = Path(__file__).resolve().parents[1]
DOMAINS = ["academic", "books", "code", "news", "web", "wiki"]


@pytest.mark.slow(seconds=180)
def test_demo_pipeline_runs_every_stage(tmp_path: Path) -> None:
    corpus = demo_corpus().model_dump(mode="json")
    for domain in corpus["domains"].values():
        for source in domain["sources"]:
            source["max_docs"] = 40
    (tmp_path / "corpus.yaml").write_text(yaml.safe_dump(corpus))
    home, root = tmp_path / "home", tmp_path / "store" / "smoke"  # outputs keyed by profile
    home.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "LLMSTACK_STORAGE_ROOT": str(root.parent),
        "LLMSTACK_CORPUS_CONFIG": str(tmp_path / "corpus.yaml"),
    }
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "llmstack"), "demo", "--profile", "smoke"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "demo: done" in proc.stdout
    store = Storage(str(root))
    for asset in ("raw_documents", "deduplicated_documents", "quality_scored", "dsir_selected"):
        for domain in DOMAINS:
            manifest = read_manifest(store, asset, domain)
            counts = manifest.counts
            if asset == "raw_documents":
                assert counts["read"] == counts["written"] + counts["quarantined"]
            else:
                assert counts["in"] == counts["kept"] + counts["dropped"], (asset, domain)
    # what one stage keeps is what the next one reads
    for domain in DOMAINS:
        raw = read_manifest(store, "raw_documents", domain)
        dedup = read_manifest(store, "deduplicated_documents", domain)
        quality = read_manifest(store, "quality_scored", domain)
        dsir = read_manifest(store, "dsir_selected", domain)
        assert dedup.counts["in"] == raw.rows
        assert quality.counts["in"] == dedup.rows
        assert dsir.counts["in"] == quality.rows
    mixture = read_manifest(store, "sampled_mixture", None)
    assert mixture.rows > 0 and store.exists(mixture.extra["plan_path"])
    assert store.exists("tokenizer/tokenizer.json")
    run_dir = Path(store.read_json("pretrained_checkpoint/current.json")["run_dir"])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["step"] == 20
    assert (Path(summary["checkpoint"]) / "COMPLETE").exists()
    assert (run_dir / "hf" / "config.json").exists()
    val = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["val/loss"] for r in val if "val/loss" in r]
    assert len(losses) >= 2 and losses[-1] < losses[0]
    # continued pretraining on code from the pretrained checkpoint: code's loss falls
    mid_dir = Path(store.read_json("midtrained_checkpoint/current.json")["run_dir"])
    mid_evals = [
        r
        for r in map(json.loads, (mid_dir / "metrics.jsonl").read_text().splitlines())
        if r["kind"] == "eval"
    ]
    assert mid_evals[0]["step"] == 0 and mid_evals[-1]["step"] == 10
    for domain in ("code", "code_target"):
        assert mid_evals[-1][f"val/{domain}/bpb"] < mid_evals[0][f"val/{domain}/bpb"]
    assert (mid_dir / "hf" / "config.json").exists()
    # SFT of the midtrained model on the bundled conversations, with its chat template
    sft_dir = Path(store.read_json("sft_checkpoint/current.json")["run_dir"])
    sft_summary = json.loads((sft_dir / "summary.json").read_text())
    assert sft_summary["step"] == 6 and sft_summary["samples"]
    hf_tokenizer = json.loads((sft_dir / "hf" / "tokenizer_config.json").read_text())
    assert "chat_template" in hf_tokenizer
    # toxicity tracked at every evaluation of every training stage
    for folder in (run_dir, mid_dir, sft_dir):
        records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        evals = [r for r in records if r["kind"] == "eval"]
        assert evals and all(0 <= r["eval/toxicity_rate"] <= 1 for r in evals), folder
    # a safety evaluation per checkpoint stage, every generation stored
    stages = (("base", "continuation"), ("midtrained", "continuation"), ("sft", "chat"),
              ("dpo", "chat"), ("rl", "chat"))  # fmt: skip
    for stage, mode in stages:
        evaluated = read_manifest(store, "safety_eval", stage)
        assert evaluated.extra["mode"] == mode
        table = store.read_table(evaluated.shards[0].path)
        suites = {"toxicity", "refusal", "gsm8k", "humaneval"} | ({"judge"} if mode == "chat"
                                                                   else set())  # fmt: skip
        assert set(table.column("suite").to_pylist()) == suites
        assert evaluated.extra["metrics"]["over_refusal/xstest_safe"] is not None
    # the report card: a column per checkpoint stage, every one built
    card = store.read_json("report_card.json")
    built = {s["stage"]: s["built"] for s in card["stages"]}
    assert built == {"pretrained": True, "midtrained": True, "sft": True, "reward model": True,
                     "dpo": True, "rl": True, "sl-cai": True, "rl-cai": True}  # fmt: skip
    columns = {s["stage"]: s["metrics"] for s in card["stages"] if s["built"]}
    assert columns["pretrained"]["mode"] == "continuation"  # its safety_eval is the base's
    assert "sft_heldout_loss" in columns["sft"]
    assert {"reward_accuracy", "reward_margin"} <= columns["reward model"].keys()
    assert {"preference_accuracy", "preference_margin", "win_rate_vs_sft",
            "over_refusal/xstest_safe"} <= columns["dpo"].keys()  # fmt: skip
    assert {"rl_heldout_reward", "rl_heldout_gsm8k", "win_rate_vs_sft"} <= columns["rl"].keys()
    # online RL: two GRPO steps on the policy's own samples, the task metrics beside the reward
    rl_dir = Path(store.read_json("rl_checkpoint/current.json")["run_dir"])
    records = [json.loads(line) for line in (rl_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2]
    assert all({"train/reward", "train/reward_gsm8k", "train/reward_safety", "train/kl"}
               <= r.keys() for r in records if r["kind"] == "train")  # fmt: skip
    assert all({"val/gsm8k_accuracy", "val/refusal_rate", "val/over_refusal_rate"} <= r.keys()
               for r in records if r["kind"] == "eval")  # fmt: skip
    prompts = read_manifest(store, "rl_prompts", None).counts
    assert prompts["read"] == prompts["train"] + prompts["val"] + prompts["too_long"]
    # preference data: every HH record accounted for, a reference cache keyed by the SFT model
    pairs = read_manifest(store, "preference_dataset", None).counts
    assert pairs["read"] == sum(pairs[k] for k in ("quarantined", "duplicate", "contaminated",
                                                   "dropped", "train", "val"))  # fmt: skip
    key = read_manifest(store, "reference_logprobs", None).extra["key"]
    assert key["weights_sha256"] == weights_digest(Path(sft_summary["checkpoint"]))
    assert "forgetting_max_bpb_change" in columns["midtrained"]
    assert "| refusal: HarmBench |" in store.read_bytes("report_card.md").decode()
    assert proc.stdout.rstrip().splitlines()[-1] == f"report card: {store.url('report_card.md')}"
    # every asset check of every run passed: 4 per raw partition, 3 per dedup partition,
    # 1 per quality partition, and the global no-exact-duplicate check
    with DagsterInstance.from_config(str(home)) as instance:
        evaluations = [
            record.dagster_event.event_specific_data
            for run in instance.get_runs()
            for record in instance.all_logs(
                run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
        ]  # fmt: skip
    # ... and the midtrained checkpoint's no_forgetting check
    assert len(evaluations) == 6 * (4 + 3 + 1) + 1 + 1
    assert all(e.passed for e in evaluations), [e.check_name for e in evaluations if not e.passed]
    # every markdown table in every materialization's metadata has data rows
    with DagsterInstance.from_config(str(home)) as instance:
        materializations = [
            record.dagster_event.event_specific_data.materialization
            for run in instance.get_runs()
            for record in instance.all_logs(
                run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
        ]  # fmt: skip
    tables = {
        (m.asset_key.to_user_string(), m.partition, label): value.value
        for m in materializations
        for label, value in m.metadata.items()
        if isinstance(value, MarkdownMetadataValue) and _looks_like_table(value.value)
    }
    assert {label for _, _, label in tables} >= {"per_domain", "validation", "composition"}
    empty = [key for key, text in tables.items() if not _table_data_rows(text)]
    assert not empty, empty
    # lineage of one document trained on, and of one dropped by the quality stage
    kept = trace_document(store, store.read_table(mixture.shards[0].path, ["id"])["id"][0].as_py())
    assert kept.final.stage == "tokenized_shards", format_trace(kept)
    assert kept.checkpoints[-1].step == summary["step"], format_trace(kept)
    drops = read_manifest(store, "quality_scored", "web").drops
    dropped = trace_document(store, store.read_table(drops[0].path, ["id"])["id"][0].as_py())
    assert dropped.final.stage == "quality_scored" and dropped.final.decision == "dropped"


def _looks_like_table(text: str) -> bool:
    """A markdown table (header and separator lines), or markdown_table's empty marker."""
    lines = text.strip().splitlines()
    if lines == ["_no rows_"]:
        return True
    return len(lines) >= 2 and lines[0].startswith("|") and set(lines[1]) <= set("|-: ")


def _table_data_rows(text: str) -> list[str]:
    """The data rows of a markdown table (none for "_no rows_")."""
    lines = text.strip().splitlines()
    return [line for line in lines[2:] if line.startswith("|")]
