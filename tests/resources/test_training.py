"""The local training resource end to end on CPU: a subprocess under Dagster Pipes."""

from pathlib import Path

import dagster as dg
import pytest
from support.training import resource_train_config

from llmstack_dagster.core.dispatch.outcome import TrainingOutcome
from llmstack_dagster.core.training.config import TrainConfig
from llmstack_dagster.resources.training import LocalTrainingResource, TrainingResource, local_nproc


def test_local_resource_trains_in_a_subprocess(
    token_data: Path, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    out_dir = tmp_path / "run"
    outcomes: list[TrainingOutcome] = []

    @dg.asset
    def tiny_pretrained(context: dg.AssetExecutionContext, training: TrainingResource):
        outcome = training.run_training(
            context,
            config=TrainConfig.model_validate(resource_train_config()),
            data_dir=str(token_data),
            out_dir=str(out_dir),
        )
        outcomes.append(outcome)
        return dg.MaterializeResult(metadata={"step": outcome.final["step"]})

    result = dg.materialize(
        [tiny_pretrained], resources={"training": LocalTrainingResource()}, instance=instance
    )
    assert result.success
    outcome = outcomes[0]
    train = [m for m in outcome.metrics if m["kind"] == "train"]
    assert [m["step"] for m in train] == [1, 2, 3, 4]
    assert all(m["train/loss"] > 0 and "train/tokens_per_s" in m for m in train)
    assert outcome.checkpoint and Path(outcome.checkpoint).name == "step_00000004"
    assert (Path(outcome.checkpoint) / "COMPLETE").is_file()
    assert outcome.hf_dir and (Path(outcome.hf_dir) / "config.json").is_file()
    assert outcome.final["step"] == 4 and "val/loss" in outcome.final["metrics"]
    assert outcome.metadata["step"] == 4 and outcome.metadata["checkpoint"] == outcome.checkpoint
    assert (out_dir / "run.json").is_file()
    # Pipes log lines from the subprocess reached the Dagster event log.
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any(m.startswith("training ") and "params on cpu" in m for m in messages)
    assert any(m.startswith("step 4/4 (ETA ") and ": train/loss=" in m for m in messages)


def test_cpu_config_never_uses_torchrun() -> None:
    cfg = TrainConfig.model_validate(resource_train_config(device="cpu"))
    assert local_nproc(cfg, None) == 1


def test_backend_is_chosen_by_environment(monkeypatch) -> None:
    from llmstack_dagster.resources.modal_training import ModalTrainingResource
    from llmstack_dagster.resources.training import TRAINING_BACKEND_ENV, training_resource_from_env

    monkeypatch.delenv(TRAINING_BACKEND_ENV, raising=False)
    assert type(training_resource_from_env()) is LocalTrainingResource
    monkeypatch.setenv(TRAINING_BACKEND_ENV, "modal")
    assert type(training_resource_from_env()) is ModalTrainingResource
    monkeypatch.setenv(TRAINING_BACKEND_ENV, "slurm")
    with pytest.raises(ValueError, match="local' or 'modal"):
        training_resource_from_env()
