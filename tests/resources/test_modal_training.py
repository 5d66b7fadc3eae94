"""The Modal resource up to Modal's servers: only the network methods are faked."""

from pathlib import Path

import dagster as dg
import modal
import pytest
from modal.exception import FunctionTimeoutError
from support.fake_modal import FakeModal
from support.training import resource_train_config, run_entrypoint, tiny_config, write_config

from llmstack_dagster.core.dispatch.outcome import TrainingOutcome
from llmstack_dagster.core.training.checkpoint import checkpoint_dir
from llmstack_dagster.core.training.config import TrainConfig
from llmstack_dagster.core.training.init_weights import weights_digest
from llmstack_dagster.resources.modal_training import ModalTrainingResource
from llmstack_dagster.resources.training import TrainingResource

SECRET = "hf_s3cr3t-value-never-logged"


def materialize_tiny(resource: TrainingResource, data: Path, out_dir: Path, instance, **overrides):
    outcomes: list[TrainingOutcome] = []

    @dg.asset
    def tiny_pretrained(context: dg.AssetExecutionContext, training: TrainingResource):
        outcome = training.run_training(
            context,
            config=TrainConfig.model_validate(resource_train_config(max_steps=50, **overrides)),
            data_dir=str(data),
            out_dir=str(out_dir),
        )
        outcomes.append(outcome)
        return dg.MaterializeResult(metadata=outcome.metadata)

    result = dg.materialize([tiny_pretrained], resources={"training": resource}, instance=instance)
    return result, outcomes[0]


def test_modal_run_streams_downloads_and_reruns_resume(
    token_data: Path,
    tmp_path: Path,
    fake_modal: FakeModal,
    monkeypatch: pytest.MonkeyPatch,
    instance: dg.DagsterInstance,
) -> None:
    monkeypatch.setenv("LLMSTACK_TEST_HF_TOKEN", SECRET)
    secret_dicts: list[dict] = []
    real_from_dict = modal.Secret.from_dict
    monkeypatch.setattr(
        modal.Secret, "from_dict", lambda env: secret_dicts.append(env) or real_from_dict(env)
    )
    resource = ModalTrainingResource(
        preset="testing",
        max_steps=4,  # the testing preset caps steps; here further, to stay fast
        poll_s=0.1,
        env_secrets={"HF_TOKEN": dg.EnvVar("LLMSTACK_TEST_HF_TOKEN")},
    )
    out_dir = tmp_path / "local_run"
    result, outcome = materialize_tiny(resource, token_data, out_dir, instance)
    assert result.success
    # Uploaded by hash, trained remotely (capped at 4 steps), committed, downloaded.
    assert any(p.endswith("index.json") for p in fake_modal.uploaded)
    assert any(p.endswith("tokenizer.json") for p in fake_modal.uploaded)
    assert fake_modal.commits >= 2
    assert [m["step"] for m in outcome.metrics if m["kind"] == "train"] == [1, 2, 3, 4]
    assert outcome.checkpoint == str(out_dir / "checkpoints" / "step_00000004")
    assert sorted(p.name for p in (out_dir / "checkpoints").iterdir()) == ["step_00000004"]
    assert outcome.hf_dir == str(out_dir / "hf") and (out_dir / "hf" / "config.json").is_file()
    assert outcome.metadata["step"] == 4 and outcome.metadata["checkpoint"] == outcome.checkpoint
    assert "| prompt |" in outcome.metadata["samples"]
    # Live: remote output lines and metric records reached the Dagster log while polling.
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any("modal metric step 4: train/loss=" in m for m in messages)
    assert any("modal: no complete checkpoint, starting fresh" in m for m in messages)
    # The secret went to Modal, and nowhere into logs or metadata.
    assert secret_dicts == [{"HF_TOKEN": SECRET}]
    materialization = result.asset_materializations_for_node("tiny_pretrained")[0]
    assert all(SECRET not in m for m in messages)
    assert SECRET not in str(materialization.metadata)
    assert SECRET not in (out_dir / "run.json").read_text()

    # A re-run uploads nothing new and resumes from the volume's latest complete checkpoint.
    fake_modal.uploaded.clear()
    result, outcome = materialize_tiny(resource, token_data, out_dir, instance)
    assert result.success and fake_modal.uploaded == []
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any("modal: resuming from step_00000004" in m for m in messages)
    assert any("skipped" in m and "uploaded 0 files" in m for m in messages)
    assert outcome.final["step"] == 4


def test_initial_weights_travel_to_the_volume_by_digest(
    token_data: Path, tmp_path: Path, fake_modal: FakeModal, instance: dg.DagsterInstance
) -> None:
    base = tiny_config(token_data, tmp_path / "base", max_steps=2)
    run_entrypoint(write_config(base, tmp_path / "base.json"))
    weights = checkpoint_dir(tmp_path / "base", 2)
    resource = ModalTrainingResource(preset="testing", max_steps=2, poll_s=0.1)
    out_dir = tmp_path / "continued"
    result, outcome = materialize_tiny(
        resource, token_data, out_dir, instance, init={"path": str(weights)}
    )
    assert result.success
    volume_copy = f"init/{weights_digest(weights)[:16]}"
    assert any(p.startswith(f"/{volume_copy}/") or p.startswith(volume_copy)
               for p in fake_modal.uploaded)  # fmt: skip
    detail = outcome.final["resume"]["detail"]
    assert f"from the weights in {fake_modal.root / volume_copy}" in detail


class InterruptedCall:
    object_id = "fc-interrupted"

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.cancelled = False

    def get(self, timeout: float | None = None):
        raise self.error

    def cancel(self, terminate_containers: bool = False) -> None:
        self.cancelled = True


@pytest.mark.parametrize("error", [KeyboardInterrupt, dg.DagsterExecutionInterruptedError])
def test_interrupt_while_polling_cancels_the_call(
    token_data: Path,
    tmp_path: Path,
    fake_modal: FakeModal,
    error: type[BaseException],
    instance: dg.DagsterInstance,
) -> None:
    fake_modal.spawn_hook = lambda fake, request: InterruptedCall(error())
    resource = ModalTrainingResource(poll_s=0.01)
    context = dg.build_asset_context(instance=instance)
    with pytest.raises(error):
        resource.run_training(
            context,
            config=TrainConfig.model_validate(resource_train_config()),
            data_dir=str(token_data),
            out_dir=str(tmp_path / "out"),
        )
    assert len(fake_modal.calls) == 1 and fake_modal.calls[0].cancelled


def test_modal_timeout_is_resubmitted_then_gives_up(
    token_data: Path, tmp_path: Path, fake_modal: FakeModal, instance: dg.DagsterInstance
) -> None:
    fake_modal.spawn_hook = lambda fake, request: InterruptedCall(FunctionTimeoutError("24 h"))
    resource = ModalTrainingResource(poll_s=0.01, resubmit_on_timeout=2)
    with pytest.raises(RuntimeError, match="after 2 resubmits"):
        resource.run_training(
            dg.build_asset_context(instance=instance),
            config=TrainConfig.model_validate(resource_train_config()),
            data_dir=str(token_data),
            out_dir=str(tmp_path / "out"),
        )
    assert len(fake_modal.calls) == 3 and not any(c.cancelled for c in fake_modal.calls)
