import json
from datetime import UTC, datetime
from pathlib import Path

from support.checkpoints import SMALL, write_checkpoint

from llmstack_dagster.core.evaluation.report_card import (
    MISSING,
    NOT_MEASURED,
    Stage,
    StageReport,
    card_json,
    card_markdown,
    card_rows,
    training_metrics,
)


def write_run(run_dir: Path, records: list[dict], **meta) -> Path:
    _, checkpoint = write_checkpoint(run_dir, SMALL, **meta)
    with open(run_dir / "metrics.jsonl", "w") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return checkpoint


def test_training_metrics_of_a_run_from_weights(tmp_path: Path) -> None:
    records = [
        {"step": 0, "kind": "eval", "time": 100.0, "val/loss": 3.0, "val/code/loss": 3.0,
         "val/code/bpb": 2.0, "val/web/loss": 3.0, "val/web/bpb": 1.0},
        {"step": 10, "kind": "train", "time": 160.0, "train/loss": 2.5},
        {"step": 10, "kind": "eval", "time": 220.0, "val/loss": 2.5, "val/code/loss": 2.0,
         "val/code/bpb": 1.5, "val/web/loss": 3.1, "val/web/bpb": 1.05},
    ]  # fmt: skip
    checkpoint = write_run(
        tmp_path / "run", records, step=10, tokens_seen=5120, data_version="abcdef0123456789",
        date_min=datetime(2019, 1, 2, tzinfo=UTC), date_max=datetime(2021, 3, 4, tzinfo=UTC),
        metrics={"val/loss": 2.5, "val/code/bpb": 1.5, "val/web/bpb": 1.05},
    )  # fmt: skip
    got = training_metrics(tmp_path / "run", checkpoint, targets={"code"})
    assert got == {
        "step": 10,
        "tokens_seen": 5120,
        "wall_time_min": 2.0,
        "data_version": "abcdef012345",
        "date_range": "2019-01-02 .. 2021-03-04",
        "val_loss": 2.5,
        "val_bpb/code": 1.5,
        "val_bpb/web": 1.05,
        "forgetting_max_bpb_change": 0.05,  # web 1.0 -> 1.05; code is the target
    }
    # a run from scratch (no step-0 baseline of a base model) reports no forgetting
    assert "forgetting_max_bpb_change" not in training_metrics(tmp_path / "run", checkpoint, set())


def test_missing_stages_and_unmeasured_metrics_are_never_zero() -> None:
    reports = [
        StageReport(Stage("pretrained", "pretrained_checkpoint"), True,
                    {"val_loss": 5.0, "val_bpb/web": 2.5, "gsm8k/exact_match": 0.0}),
        StageReport(Stage("sft", "sft_checkpoint", "sft"), True,
                    {"sft_heldout_loss": 4.2, "refusal/harmbench": 0.25}),
        StageReport(Stage("dpo", "dpo_checkpoint"), False),
    ]  # fmt: skip
    rows = dict(card_rows(reports))
    assert rows["validation loss"] == ["5", NOT_MEASURED, MISSING]
    assert rows["bits per byte: web"] == ["2.5", NOT_MEASURED, MISSING]
    assert rows["GSM8K exact match"] == ["0", NOT_MEASURED, MISSING]  # measured 0 stays 0
    assert rows["refusal: HarmBench"] == [NOT_MEASURED, "0.25", MISSING]
    assert "HumanEval pass@1" not in rows  # no stage has it
    markdown = card_markdown(reports)
    assert "| metric | pretrained | sft | dpo |" in markdown
    assert "Not built yet: dpo." in markdown
    data = card_json(reports)
    assert [s["built"] for s in data["stages"]] == [True, True, False]
    assert data["stages"][2]["metrics"] is None
