"""The torchrun path on CPU: gloo, 2 processes, DDP and FSDP2 against one process."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.training import clean_env, tiny_config, write_config

from llmstack_dagster.core.training.checkpoint import latest_complete_checkpoint, load_checkpoint
from llmstack_dagster.core.training.metrics import read_metrics

TORCHRUN = Path(sys.executable).with_name("torchrun")


def losses(out_dir: Path) -> list[float]:
    return [
        r["train/loss"] for r in read_metrics(out_dir / "metrics.jsonl") if r["kind"] == "train"
    ]


@pytest.fixture(scope="module")
def single(token_data: Path, tmp_path_factory) -> Path:
    """One process, 2 sequences x 2 accumulation steps = the same global batch of 4."""
    from llmstack_dagster.core.training.engine import train

    out = tmp_path_factory.mktemp("single")
    train(
        tiny_config(token_data, out, max_steps=4, micro_batch_size=2, grad_accum_steps=2),
        log=lambda _: None,
    )
    return out


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_process_gloo_matches_single_process(single, token_data, tmp_path, strategy) -> None:
    if shutil.which(str(TORCHRUN)) is None:
        pytest.fail("torchrun is missing from the environment")
    cfg = tiny_config(
        token_data, tmp_path / "out", max_steps=4, micro_batch_size=2, parallelism=strategy
    )
    config_file = write_config(cfg, tmp_path / "cfg.json")
    subprocess.run(
        [
            str(TORCHRUN),
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "llmstack_dagster.core.training.entrypoint",
            "--config",
            str(config_file),
        ],
        env=clean_env(),
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert losses(tmp_path / "out") == pytest.approx(losses(single), abs=1e-5)
    ours = load_checkpoint(latest_complete_checkpoint(tmp_path / "out")).model_state
    reference = load_checkpoint(latest_complete_checkpoint(single)).model_state
    assert ours.keys() == reference.keys()
    for name, tensor in reference.items():
        assert (ours[name] - tensor).abs().max() < 1e-4, name
