"""``pretrained_checkpoint`` with nothing upstream fails before any trainer starts."""

from __future__ import annotations

from pathlib import Path

from dagster import materialize

from llmstack_dagster.assets.pretraining import pretrained_checkpoint
from llmstack_dagster.resources.storage import StorageResource
from llmstack_dagster.resources.training import TrainingResource


class RefusingTraining(TrainingResource):
    """Fails the test if a trainer (a GPU container on Modal) would be started."""

    def run_training(self, context, config, data_dir, out_dir):  # noqa: ANN001, ANN201
        raise AssertionError("the trainer was started")


def test_no_token_shards_is_a_clear_error_before_training(tmp_path: Path) -> None:
    result = materialize(
        [pretrained_checkpoint],
        resources={"storage": StorageResource(root=str(tmp_path)), "training": RefusingTraining()},
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    error = failure.step_failure_data.error
    message = "".join(
        e.message for e in [error, *([error.cause] if error.cause else [])] if e is not None
    )
    assert "no manifest for asset 'tokenized_shards'" in message
    assert "materialize it first" in message
