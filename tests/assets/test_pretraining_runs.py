"""Re-materializing ``pretrained_checkpoint`` resumes only the same run.

The defects this guards against: with a new seed the old model was reported as a success
("steps 20->20"), and with a new vocabulary training failed with a size mismatch until the
output folder was deleted by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import materialize
from support.training_data import sample_documents

from llmstack_dagster.assets.pretraining import pretrained_checkpoint
from llmstack_dagster.assets.training_runs import read_current_run
from llmstack_dagster.core.schema import DOCUMENT_SCHEMA, documents_table
from llmstack_dagster.core.storage import ShardManifest, ShardWriter, Storage, write_manifest
from llmstack_dagster.core.training.token_shards import TokenShardConfig, run_token_shards
from llmstack_dagster.core.training.tokenizer import (
    TokenizerConfig,
    save_tokenizer,
    train_tokenizer,
)
from llmstack_dagster.resources.storage import StorageResource
from llmstack_dagster.resources.training import LocalTrainingResource

pytestmark = pytest.mark.slow

SETTINGS = {
    "preset": "tiny",
    "seq_len": 32,
    "micro_batch_size": 4,
    "max_steps": 4,
    "warmup_steps": 1,
    "eval_every": 0,
    "checkpoint_every": 2,
    "log_every": 1,
    "cpu_threads": 1,
}


def token_shards(store: Storage, docs: list[dict], vocab_size: int, tmp: Path) -> None:
    """``tokenized_shards`` in ``store``: the documents under a tokenizer of ``vocab_size``."""
    writer = ShardWriter(store, "mixture/all", DOCUMENT_SCHEMA, max_rows=200)
    writer.write_table(documents_table(docs))
    mixture = ShardManifest(asset="mixture", partition="all", shards=writer.close())
    write_manifest(store, mixture)
    tokenizer = train_tokenizer((d["text"] for d in docs), TokenizerConfig(vocab_size=vocab_size))
    path = save_tokenizer(tokenizer, tmp / f"tok{vocab_size}")
    run_token_shards(store, mixture, path, TokenShardConfig(val_fraction=0.1))


def materialize_once(root: Path, **overrides) -> dict:
    result = materialize(
        [pretrained_checkpoint],
        resources={"storage": StorageResource(root=str(root)), "training": LocalTrainingResource()},
        run_config={"ops": {"pretrained_checkpoint": {"config": SETTINGS | overrides}}},
    )
    (mat,) = result.asset_materializations_for_node("pretrained_checkpoint")
    return {k: v.value for k, v in mat.metadata.items()}


def test_only_the_same_run_resumes(shared_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = Storage(str(root))
    docs = sample_documents(shared_data)
    token_shards(store, docs, 512, tmp_path)

    first = materialize_once(root, seed=1)
    assert first["steps"] == 4 and first["resumed"] is False
    assert first["resume_reason"].startswith(f"first run {first['run_id']}")

    again = materialize_once(root, seed=1)
    assert again["run_id"] == first["run_id"] and again["run_dir"] == first["run_dir"]
    assert again["resumed"] is True and again["resumed_from_step"] == 4

    reseeded = materialize_once(root, seed=2)  # was: the old model reported as a success
    assert reseeded["run_id"] != first["run_id"] and reseeded["run_dir"] != first["run_dir"]
    assert reseeded["resumed"] is False and reseeded["steps"] == 4
    assert "seed: 1 -> 2" in reseeded["resume_reason"]

    token_shards(store, docs, 384, tmp_path)  # was: "size mismatch for lm_head.weight"
    revocab = materialize_once(root, seed=2)
    assert revocab["run_id"] != reseeded["run_id"] and revocab["resumed"] is False
    assert "data version:" in revocab["resume_reason"]
    assert read_current_run(store, "pretrained_checkpoint")["run_id"] == revocab["run_id"]

    fresh = materialize_once(root, seed=2, fresh=True)
    assert fresh["run_id"] == revocab["run_id"] and fresh["run_dir"] != revocab["run_dir"]
    assert fresh["resumed"] is False and "fresh: true" in fresh["resume_reason"]
    assert Path(first["run_dir"]).is_dir()  # old runs stay until cleaned
