"""The constitutional-AI assets materialize end to end with a tiny model on a few red-team
prompts: constitution, cai_revisions, sl_cai_checkpoint, ai_preferences, rl_cai_checkpoint."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from dagster import materialize
from support.checkpoints import write_checkpoint
from support.sft_run import demo_sft_dataset

from llmstack_dagster.assets.constitutional import (
    CONSTITUTION_CODE_VERSION,
    ai_preferences,
    cai_revisions,
    constitution,
    rl_cai_checkpoint,
    sl_cai_checkpoint,
)
from llmstack_dagster.core.models.config import ModelConfig
from llmstack_dagster.core.posttraining.constitution import constitution_hash, load_constitution
from llmstack_dagster.core.posttraining.preference_index import load_preference_index
from llmstack_dagster.core.storage import Storage, read_manifest
from llmstack_dagster.core.training.tokenizer import TOKENIZER_FILE, load_tokenizer
from llmstack_dagster.resources.storage import StorageResource
from llmstack_dagster.resources.training import LocalTrainingResource


def fake_sft_run(store: Storage, tokenizer_file: Path) -> None:
    """An 'SFT' run of a tiny random model, recorded as sft_checkpoint's current run."""
    run_dir = Path(store.root) / "sft_checkpoint" / "runs" / "tiny"
    vocab = load_tokenizer(tokenizer_file).get_vocab_size()
    cfg = ModelConfig(
        vocab_size=vocab,
        d_model=48,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        ffn_hidden=96,
        max_seq_len=256,
    )
    _, checkpoint = write_checkpoint(run_dir, cfg)
    shutil.copyfile(tokenizer_file, run_dir / TOKENIZER_FILE)
    store.write_json(
        "sft_checkpoint/current.json",
        {
            "run_id": "tiny",
            "run_dir": str(run_dir),
            "run_rel": "sft_checkpoint/runs/tiny",
            "checkpoint": str(checkpoint),
            "checkpoint_rel": str(checkpoint.relative_to(run_dir)),
            "hf_dir": None,
            "step": 1,
        },
    )


TRAIN = {
    "max_steps": 2,
    "eval_every": 2,
    "checkpoint_every": 2,
    "log_every": 1,
    "toxicity_prompts": 0,
    "micro_batch_size": 2,
}


@pytest.mark.slow
def test_cai_assets_materialize_with_a_tiny_model(tmp_path, tokenizer_file, shared_data) -> None:
    root = tmp_path / "store"
    store = Storage(str(root))
    demo_sft_dataset(root, shared_data, tokenizer_file, max_len=256)
    fake_sft_run(store, tokenizer_file)
    resources = {"storage": StorageResource(root=str(root)), "training": LocalTrainingResource()}
    result = materialize(
        [constitution, cai_revisions, sl_cai_checkpoint, ai_preferences, rl_cai_checkpoint],
        resources=resources,
        run_config={
            "ops": {
                "cai_revisions": {
                    "config": {"prompts": 4, "max_new_tokens": 12, "temperature": 1.0}
                },
                "sl_cai_checkpoint": {"config": TRAIN},
                "ai_preferences": {
                    "config": {
                        "prompts": 6,
                        "principles": 2,
                        "max_new_tokens": 12,
                        "val_fraction": 0.3,
                    }
                },
                "rl_cai_checkpoint": {"config": TRAIN},
            }
        },
    )
    assert result.success
    events = {
        e.materialization.asset_key.to_user_string(): e.materialization
        for e in result.get_asset_materialization_events()
    }
    # the constitution's hash is its data version; its code version follows the file
    digest = constitution_hash(load_constitution())
    assert events["constitution"].metadata["hash"].value == digest
    assert CONSTITUTION_CODE_VERSION.endswith(digest[:12])
    # every prompt is a chain, quarantined or contaminated; chains are complete
    revisions = read_manifest(store, "cai_revisions", None)
    counts = revisions.counts
    assert counts["in"] == 4 == counts["kept"] + counts["quarantined"] + counts["contaminated"]
    chains = [c for s in revisions.shards for c in pq.read_table(Path(root) / s.path).to_pylist()]
    assert len(chains) == counts["kept"] >= 1
    for chain in chains:
        assert chain["initial"] and len(chain["rounds"]) == 2
        assert chain["final"] == chain["rounds"][-1]["revision"]
    # SL-CAI trained on the mix; the AI-labelled pairs carry soft labels in [0.5, 1]
    mix = read_manifest(store, "sl_cai_data", None).counts
    harmless = counts["kept"] + 24  # the chains and the borderline-helpful examples
    assert mix.get("cai_revision", 0) == counts["kept"] and mix["borderline_helpful"] == 24
    assert mix["in"] == 2 * harmless  # helpful_share 0.5
    pairs = read_manifest(store, "ai_preferences", None)
    assert (
        pairs.counts["in"]
        == 6
        == pairs.counts["train"] + pairs.counts["val"] + pairs.counts["dropped"]
    )
    folder = Path(root) / pairs.folder
    index = load_preference_index(folder)
    labels = pq.read_table(folder / index.split_shards("train")[0].path).column("label")
    assert all(0.5 <= v <= 1.0 for v in labels.to_pylist())
    bias = events["ai_preferences"].metadata["position_bias"].value
    assert set(bias) == {"mean_p_a", "bias", "a_preferred_rate"}
    # RL-CAI is DPO from the SL-CAI model against its own scored reference
    current = store.read_json("rl_cai_checkpoint/current.json")
    summary = json.loads((Path(current["run_dir"]) / "summary.json").read_text())
    assert summary["step"] == 2
    sl_cai = store.read_json("sl_cai_checkpoint/current.json")
    assert os.path.isdir(sl_cai["run_dir"])
    # the online route: a preference model on the soft labels, then GRPO against it
    from llmstack_dagster.assets.evaluation import refusal_classifier
    from llmstack_dagster.assets.online_rl import rl_prompts

    online = materialize(
        [rl_prompts, refusal_classifier, rl_cai_checkpoint],
        resources=resources,
        run_config={
            "ops": {
                "rl_prompts": {
                    "config": {"gsm8k": 4, "red_team": 4, "safe": 4, "max_prompt_len": 128}
                },
                "rl_cai_checkpoint": {
                    "config": {
                        **TRAIN,
                        "method": "grpo",
                        "reward_steps": 2,
                        "grpo_steps": 2,
                        "group_size": 2,
                        "grpo_micro_batch_size": 4,
                        "max_new_tokens": 8,
                    }
                },
            }
        },
    )
    assert online.success
    preference = store.read_json("rl_cai_preference_model/current.json")
    assert json.loads((Path(preference["run_dir"]) / "summary.json").read_text())["step"] == 2
    current = store.read_json("rl_cai_checkpoint/current.json")
    records = [
        json.loads(line)
        for line in (Path(current["run_dir"]) / "metrics.jsonl").read_text().splitlines()
    ]
    rewards = [r["train/reward_reward_model"] for r in records if r["kind"] == "train"]
    assert len(rewards) == 2 and all(np.isfinite(rewards))
