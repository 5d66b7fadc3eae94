"""A run resumes only itself: identities, run folders, and the engine refusing another run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.training import tiny_config

from llmstack_dagster.core.training.engine import RunIdentityError, claim_run_dir, identity_of
from llmstack_dagster.core.training.run_identity import IDENTITY_FILE
from llmstack_dagster.core.training.runs import RUNS, plan_run


def test_identity_follows_what_is_trained_not_how_it_is_run(token_data: Path) -> None:
    base = identity_of(tiny_config(token_data, Path("a")))
    operational = tiny_config(token_data, Path("b"), log_every=7, checkpoint_every=2, compile=True)
    assert identity_of(operational).id == base.id
    reseeded = identity_of(tiny_config(token_data, Path("a"), seed=1))
    assert reseeded.id != base.id
    assert reseeded.changes_from(base) == ["seed: 1337 -> 1"]
    longer = identity_of(tiny_config(token_data, Path("a"), max_steps=99))
    assert longer.id != base.id  # the schedule depends on max_steps


def test_identity_covers_the_data_and_the_initial_weights(token_data: Path, tmp_path) -> None:
    base = identity_of(tiny_config(token_data, Path("a")))
    data = tmp_path / "data"
    data.mkdir()
    index = json.loads((token_data / "index.json").read_text())
    (data / "index.json").write_text(json.dumps(index | {"data_version": "other"}))
    moved = identity_of(tiny_config(data, Path("a")))
    assert moved.id != base.id and moved.changes_from(base)[-1].startswith("data version:")
    weights = tmp_path / "w"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"weights")
    started = identity_of(tiny_config(token_data, Path("a"), init={"path": str(weights)}))
    assert started.init_weights and started.id != base.id
    elsewhere = tmp_path / "copy"
    elsewhere.mkdir()
    (elsewhere / "model.safetensors").write_bytes(b"weights")
    copy = identity_of(tiny_config(token_data, Path("a"), init={"path": str(elsewhere)}))
    assert copy.id == started.id  # weights count by digest, not by path


def test_plan_resumes_the_same_identity_and_opens_a_folder_for_another(
    token_data: Path, tmp_path: Path
) -> None:
    first = identity_of(tiny_config(token_data, Path("x")))
    plan = plan_run(tmp_path, first)
    assert plan.run_dir == tmp_path / RUNS / first.id and not plan.resumes
    assert plan.reason == f"first run {first.id}"
    claim_run_dir(plan.run_dir, first)
    (plan.run_dir / "checkpoints" / "step_00000004").mkdir(parents=True)
    (plan.run_dir / "checkpoints" / "step_00000004" / "COMPLETE").write_text("{}")
    again = plan_run(tmp_path, first)
    assert again.run_dir == plan.run_dir and again.resumes
    assert "resumes at step 4" in again.reason

    second = identity_of(tiny_config(token_data, Path("x"), seed=5))
    other = plan_run(tmp_path, second)
    assert other.run_dir == tmp_path / RUNS / second.id and not other.resumes
    assert "seed: 1337 -> 5" in other.reason

    fresh = plan_run(tmp_path, first, fresh=True)
    assert fresh.run_dir.name.startswith(f"{first.id}-") and not fresh.resumes
    claim_run_dir(fresh.run_dir, first)
    latest = plan_run(tmp_path, first)
    assert latest.run_dir == fresh.run_dir  # the newest folder of the identity


def test_a_folder_of_another_run_is_refused(token_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    claim_run_dir(out, identity_of(tiny_config(token_data, out)))
    with pytest.raises(RunIdentityError, match=r"holds training run .*seed: 1337 -> 2"):
        claim_run_dir(out, identity_of(tiny_config(token_data, out, seed=2)))
    assert (out / IDENTITY_FILE).is_file()
