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


def test_a_budget_below_one_batch_is_an_error_before_training(token_data, tmp_path) -> None:
    import shutil

    from llmstack_dagster.core.storage import ShardManifest, Storage, write_manifest

    store = Storage(str(tmp_path))
    shutil.copytree(token_data, tmp_path / "tokenized_shards" / "v-1")
    manifest = ShardManifest(asset="tokenized_shards", partition=None, shards=[], version="v-1")
    write_manifest(store, manifest)
    result = materialize(
        [pretrained_checkpoint],
        resources={"storage": StorageResource(root=str(tmp_path)), "training": RefusingTraining()},
        run_config={"ops": {"pretrained_checkpoint": {"config": {"micro_batch_size": 100000}}}},
        raise_on_error=False,
    )
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    error = failure.step_failure_data.error
    message = error.message + (error.cause.message if error.cause else "")
    assert "needs global_batch = 100000 windows" in message and "token budget" in message
