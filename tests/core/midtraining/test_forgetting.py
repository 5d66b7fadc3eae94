import pytest

from llmstack_dagster.core.midtraining.forgetting import forgetting_rows, forgotten_domains


def record(step: int, **bpb: float) -> dict:
    values = {f"val/{d}/bpb": v for d, v in bpb.items()} | {
        f"val/{d}/loss": v * 2 for d, v in bpb.items()
    }
    return {"step": step, "kind": "eval", "val/loss": 1.0, **values}


def test_rows_compare_the_step_zero_and_the_final_evaluation() -> None:
    metrics = [
        record(0, code=2.0, news=1.0, web=1.0),
        {"step": 5, "kind": "train", "train/loss": 3.0},
        record(10, code=1.5, news=1.05, web=1.2),
    ]
    rows = forgetting_rows(metrics, targets={"code"})
    assert [r["domain"] for r in rows] == ["code", "news", "web"]
    assert rows[0] == {"domain": "code", "target": True, "base_loss": 4.0,
                       "midtrained_loss": 3.0, "base_bpb": 2.0, "midtrained_bpb": 1.5,
                       "bpb_change": -0.25}  # fmt: skip
    assert forgotten_domains(rows, 0.10) == ["web (+20.0%)"]  # news +5% is within the gate
    assert forgotten_domains(rows, 0.25) == []


def test_a_run_without_its_starting_evaluation_is_an_error() -> None:
    with pytest.raises(ValueError, match="step-0"):
        forgetting_rows([record(5, code=1.0), record(10, code=1.0)], targets=set())
