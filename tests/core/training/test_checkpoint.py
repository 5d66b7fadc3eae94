import pickle
from pathlib import Path

import pytest
import torch

from llmstack_dagster.core.models.config import ModelConfig
from llmstack_dagster.core.models.llama import LlamaLM
from llmstack_dagster.core.training.checkpoint import (
    COMPLETE,
    CheckpointMeta,
    TrainerState,
    checkpoint_dir,
    complete_checkpoints,
    latest_complete_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from llmstack_dagster.core.training.data_loader import LoaderPosition
from llmstack_dagster.core.training.distributed import full_state, load_full_state

CFG = ModelConfig(
    vocab_size=64, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, ffn_hidden=32, max_seq_len=16
)


def trained() -> tuple[LlamaLM, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = LlamaLM(CFG)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    idx = torch.randint(0, 64, (2, 8))
    for _ in range(2):
        model(idx, idx).backward()
        optimizer.step()
        optimizer.zero_grad()
    return model, optimizer


def save(out: Path, step: int, model, optimizer, keep=None) -> Path:
    model_state, optim_state = full_state(model, optimizer)
    state = TrainerState(step=step, loader=LoaderPosition(epoch=1, cursor=7), param_groups=[])
    meta = CheckpointMeta(
        step=step,
        tokens_seen=step * 16,
        model=CFG.model_dump(),
        train_config={"seed": 1},
        code_version="test",
        mixture_hash="m",
    )
    return save_checkpoint(out, model_state, optim_state, state, meta, keep=keep)


def test_round_trip_restores_weights_optimizer_and_position(tmp_path: Path) -> None:
    model, optimizer = trained()
    path = save(tmp_path, 2, model, optimizer)
    ckpt = load_checkpoint(path)
    assert ckpt.trainer_state.loader == LoaderPosition(epoch=1, cursor=7)
    assert ckpt.meta.mixture_hash == "m"
    torch.manual_seed(5)
    fresh = LlamaLM(CFG)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    load_full_state(fresh, fresh_opt, ckpt.model_state, ckpt.optim_state)
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert fresh.lm_head.weight is fresh.embed_tokens.weight
    ref, got = optimizer.state_dict()["state"], fresh_opt.state_dict()["state"]
    for key in ref:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(ref[key][name], got[key][name])


def test_incomplete_and_temporary_folders_are_ignored(tmp_path: Path) -> None:
    model, optimizer = trained()
    save(tmp_path, 4, model, optimizer)
    newer = checkpoint_dir(tmp_path, 8)
    save(tmp_path, 8, model, optimizer)
    (newer / COMPLETE).unlink()  # as if killed between rename and marker
    (tmp_path / "checkpoints" / ".tmp-step_00000012-abcd").mkdir()
    assert latest_complete_checkpoint(tmp_path) == checkpoint_dir(tmp_path, 4)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(newer)
    assert latest_complete_checkpoint(tmp_path / "nothing") is None


def test_keep_prunes_old_checkpoints(tmp_path: Path) -> None:
    model, optimizer = trained()
    for step in (1, 2, 3):
        save(tmp_path, step, model, optimizer, keep=2)
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["step_00000002", "step_00000003"]


def test_loading_never_unpickles(tmp_path: Path, monkeypatch) -> None:
    model, optimizer = trained()
    path = save(tmp_path, 1, model, optimizer)

    def forbidden(*args, **kwargs):
        raise AssertionError("unpickling during checkpoint load")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    assert load_checkpoint(path).trainer_state.step == 1
    assert {p.suffix for p in path.iterdir()} <= {".safetensors", ".json", ""}
