"""``base_model``: a Hugging Face import, once per source; clear errors when there is none."""

from __future__ import annotations

from pathlib import Path

from dagster import materialize
from support.hf_models import write_hf_model

from llmstack_dagster.assets.midtraining import BASE_MODEL_FILE, base_model
from llmstack_dagster.core.storage import Storage
from llmstack_dagster.core.training.hf_import import load_weights_folder
from llmstack_dagster.core.training.tokenizer import tokenizer_eos_id
from llmstack_dagster.resources.storage import StorageResource


def materialize_base(root: Path, **config):
    return materialize(
        [base_model],
        resources={"storage": StorageResource(root=str(root))},
        run_config={"ops": {"base_model": {"config": config}}},
        raise_on_error=False,
    )


def failure_message(result) -> str:
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    error = failure.step_failure_data.error
    return error.message + (error.cause.message if error.cause else "")


def test_an_hf_model_is_imported_once_with_its_tokenizer(tokenizer_file, tmp_path) -> None:
    write_hf_model(tmp_path / "hf", tokenizer_file)
    root = tmp_path / "store"
    assert materialize_base(root, source="hf", hf_path=str(tmp_path / "hf")).success
    store = Storage(str(root))
    record = store.read_json(BASE_MODEL_FILE)
    assert record["source"] == f"hf:{tmp_path / 'hf'}"
    weights = Path(store.local_path(record["weights_rel"]))
    config, state = load_weights_folder(weights)
    assert config.d_model == record["model"]["d_model"] == 64 and "lm_head.weight" in state
    tokenizer = Path(store.local_path(record["tokenizer_rel"]))
    assert tokenizer_eos_id(tokenizer) == tokenizer_eos_id(tokenizer_file)
    stamp = (weights / "model.safetensors").stat().st_mtime_ns
    assert materialize_base(root, source="hf", hf_path=str(tmp_path / "hf")).success
    assert (weights / "model.safetensors").stat().st_mtime_ns == stamp  # not imported again


def test_missing_sources_are_clear_errors(tmp_path) -> None:
    result = materialize_base(tmp_path, source="hf", hf_path=str(tmp_path / "nowhere"))
    assert not result.success and "does not exist" in failure_message(result)
    result = materialize_base(tmp_path)
    assert "pretrained_checkpoint has no finished run" in failure_message(result)
