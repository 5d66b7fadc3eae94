import hashlib
import json
import pickle
from pathlib import Path

import pytest
import torch

from llmstack_dagster.core.models.config import ModelConfig
from llmstack_dagster.core.models.llama import LlamaLM
from llmstack_dagster.core.training.checkpoint import (
    COMPLETE,
    CheckpointMeta,
    CorruptCheckpointError,
    TrainerState,
    checkpoint_dir,
    complete_checkpoints,
    latest_complete_checkpoint,
    load_checkpoint,
    load_latest_checkpoint,
    save_checkpoint,
    sweep_partial_checkpoints,
    verify_checkpoint,
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


def two_checkpoints(out: Path) -> tuple[Path, Path]:
    model, optimizer = trained()
    return save(out, 10, model, optimizer), save(out, 20, model, optimizer)


def test_marker_records_size_and_sha256_of_every_file(tmp_path: Path) -> None:
    model, optimizer = trained()
    path = save(tmp_path, 3, model, optimizer)
    marker = json.loads((path / COMPLETE).read_text())
    assert marker["step"] == 3
    on_disk = {p.name for p in path.iterdir()} - {COMPLETE}
    assert (
        set(marker["files"])
        == on_disk
        == {
            "model.safetensors",
            "optimizer.safetensors",
            "rng.safetensors",
            "state.json",
            "meta.json",
        }
    )
    for name, digest in marker["files"].items():
        data = (path / name).read_bytes()
        assert digest == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert verify_checkpoint(path) is True


def test_truncated_newest_falls_back_to_older_and_is_set_aside(tmp_path: Path) -> None:
    older, newest = two_checkpoints(tmp_path)
    weights = newest / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as handle:
        handle.truncate(size // 2)
    warnings: list[str] = []
    ckpt = load_latest_checkpoint(tmp_path, warnings.append)
    assert ckpt is not None and ckpt.path == older and ckpt.trainer_state.step == 10
    assert warnings == [
        f"checkpoint {newest} is corrupt (model.safetensors: size {size // 2} bytes, expected "
        f"{size}); moved to corrupt-step_00000020; falling back to step_00000010"
    ]
    assert (tmp_path / "checkpoints" / "corrupt-step_00000020" / "model.safetensors").is_file()
    assert complete_checkpoints(tmp_path) == [older]
    assert load_latest_checkpoint(tmp_path, warnings.append).path == older
    assert len(warnings) == 1  # not picked, nor reported, again


def test_flipped_byte_is_a_checksum_mismatch(tmp_path: Path) -> None:
    _, newest = two_checkpoints(tmp_path)
    weights = newest / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # a weight byte: safetensors would load it silently
    weights.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="model.safetensors: checksum mismatch"):
        load_checkpoint(newest)


def test_missing_file_is_named(tmp_path: Path) -> None:
    _, newest = two_checkpoints(tmp_path)
    (newest / "optimizer.safetensors").unlink()
    with pytest.raises(CorruptCheckpointError, match="optimizer.safetensors: missing") as err:
        verify_checkpoint(newest)
    assert str(newest) in str(err.value)
    assert isinstance(err.value, ValueError)


def test_all_corrupt_returns_none_with_warnings(tmp_path: Path) -> None:
    for path in two_checkpoints(tmp_path):
        (path / "rng.safetensors").write_bytes(b"garbage")
    warnings: list[str] = []
    assert load_latest_checkpoint(tmp_path, warnings.append) is None
    assert len(warnings) == 2
    assert "falling back to step_00000010" in warnings[0]
    assert "rng.safetensors" in warnings[1] and "no usable checkpoint left" in warnings[1]
    assert complete_checkpoints(tmp_path) == []
    assert load_latest_checkpoint(tmp_path / "nothing", warnings.append) is None
    assert len(warnings) == 2


def test_old_format_marker_is_checked_by_loading_only(tmp_path: Path) -> None:
    older, newest = two_checkpoints(tmp_path)
    for path in (older, newest):
        (path / COMPLETE).write_text(json.dumps({"step": 0}))
    assert verify_checkpoint(newest) is False
    (newest / "model.safetensors").write_bytes(b"\x00" * 16)
    warnings: list[str] = []
    assert load_latest_checkpoint(tmp_path, warnings.append).path == older
    assert "model.safetensors: unreadable" in warnings[0]


def test_unreadable_marker_is_corrupt(tmp_path: Path) -> None:
    _, newest = two_checkpoints(tmp_path)
    (newest / COMPLETE).write_text("{not json")
    with pytest.raises(CorruptCheckpointError, match="COMPLETE: unreadable marker"):
        verify_checkpoint(newest)


def test_sweep_removes_leftovers_of_killed_saves(tmp_path: Path) -> None:
    older, _ = two_checkpoints(tmp_path)
    root = tmp_path / "checkpoints"
    tmp = root / ".tmp-step_00000030-abcd1234"
    (tmp / "sub").mkdir(parents=True)
    (tmp / "model.safetensors").write_bytes(b"partial")
    old = root / ".old-step_00000010-abcd1234"  # step_00000010 exists: a stale copy
    old.mkdir()
    (old / COMPLETE).write_text("{}")
    assert sorted(sweep_partial_checkpoints(tmp_path)) == [old, tmp]
    assert sorted(p.name for p in root.iterdir()) == ["step_00000010", "step_00000020"]
    assert sweep_partial_checkpoints(tmp_path) == []
    assert sweep_partial_checkpoints(tmp_path / "nothing") == []
    assert load_checkpoint(older).trainer_state.step == 10


def test_sweep_restores_the_only_copy_left_between_renames(tmp_path: Path) -> None:
    _, newest = two_checkpoints(tmp_path)
    old = newest.with_name(".old-step_00000020-abcd1234")
    newest.rename(old)  # killed after moving the old copy aside, before the new one landed
    tmp = newest.with_name(".tmp-step_00000020-ef567890")
    tmp.mkdir()
    assert sweep_partial_checkpoints(tmp_path) == [tmp]
    assert load_checkpoint(newest).trainer_state.step == 20
