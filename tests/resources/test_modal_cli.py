"""``llmstack modal ls|get|clean|run`` against the faked Modal volume."""

from pathlib import Path

import pytest
from support.fake_modal import FakeModal

from llmstack_dagster.cli import main


def seed_volume(fake: FakeModal) -> None:
    ckpt = fake.root / "runs/r1/checkpoints/step_00000004"
    ckpt.mkdir(parents=True)
    (ckpt / "model.safetensors").write_bytes(b"w" * 10)
    (ckpt / "COMPLETE").write_text('{"step": 4}')
    (fake.root / "runs/r1/metrics.jsonl").write_text('{"step": 4}\n')


def test_ls_get_and_clean(fake_modal: FakeModal, tmp_path: Path, capsys) -> None:
    seed_volume(fake_modal)
    assert main(["modal", "--volume", "v", "ls", "runs", "-r"]) == 0
    listing = capsys.readouterr().out
    assert (
        "runs/r1/metrics.jsonl" in listing
        and "runs/r1/checkpoints/step_00000004/COMPLETE" in listing
    )
    assert main(["modal", "get", "runs/r1", str(tmp_path / "copy")]) == 0
    assert (tmp_path / "copy/checkpoints/step_00000004/model.safetensors").read_bytes() == b"w" * 10
    assert (tmp_path / "copy/metrics.jsonl").is_file()
    assert main(["modal", "clean", "runs/r1", "--yes"]) == 0
    assert not (fake_modal.root / "runs/r1").exists()


def test_run_needs_a_known_preset() -> None:
    with pytest.raises(SystemExit):
        main(["modal", "run", "--preset", "huge"])


def test_demo_command_is_still_there() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
