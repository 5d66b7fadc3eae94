"""SFT on the engine: a run SIGKILLed after a checkpoint resumes exactly, and its HF export
with the chat template and generation config reproduces the run's own greedy answers in
transformers."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from support.sft_run import demo_sft_dataset
from support.training import (
    kill_after_first_checkpoint,
    run_entrypoint,
    tiny_config,
    write_config,
)

from llmstack_dagster.core.chat.conversation import conversations_from_table
from llmstack_dagster.core.training.checkpoint import checkpoint_dir
from llmstack_dagster.core.training.engine import SUMMARY_FILE
from llmstack_dagster.core.training.metrics import read_metrics

pytestmark = pytest.mark.slow
EVAL = {"every": 8, "batches": 1, "max_new_tokens": 12}
STEPS = 16


def sft_losses(out: Path) -> list[float]:
    return [r["train/loss"] for r in read_metrics(out / "metrics.jsonl") if "train/loss" in r]


def test_sft_resumes_exactly_and_its_export_reproduces_the_samples(
    token_data, shared_data, tokenizer_file, tmp_path
) -> None:
    base = tiny_config(token_data, tmp_path / "base", max_steps=2, eval={"every": 0})
    run_entrypoint(write_config(base, tmp_path / "base.json"))
    data, _, _ = demo_sft_dataset(tmp_path / "store", shared_data, tokenizer_file, max_len=128)
    cfg = tiny_config(
        data, tmp_path / "sft", objective="sft", seq_len=127, max_steps=STEPS, checkpoint_every=4,
        eval=EVAL, export_hf=True, init={"path": str(checkpoint_dir(tmp_path / "base", 2))},
    )  # fmt: skip
    run_entrypoint(write_config(cfg, tmp_path / "sft.json"))
    out = tmp_path / "sft"
    expected = sft_losses(out)
    assert len(expected) == STEPS and all(0 < x < 10 for x in expected)
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records if "val/loss" in r] == list(range(0, STEPS + 1, 8))
    assert all(r["train/trained_tokens"] > 0 for r in records if "train/loss" in r)
    samples = sorted(p.name for p in (out / "samples").iterdir())  # at each evaluation
    assert samples == [f"step_{s:08d}.md" for s in range(0, STEPS + 1, 8)]
    summary = json.loads((out / SUMMARY_FILE).read_text())

    killed = tmp_path / "killed"
    config_file = write_config(cfg.model_copy(update={"out_dir": str(killed)}), tmp_path / "k.json")
    kill_after_first_checkpoint(config_file, killed)
    assert not (killed / SUMMARY_FILE).exists()
    result = run_entrypoint(config_file)
    assert "resumed from" in result.stderr
    assert sft_losses(killed) == expected  # every step, bit for bit

    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf_dir = out / "hf"
    assert (killed / "hf" / "config.json").is_file()
    assert "chat_template" in json.loads((hf_dir / "tokenizer_config.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    val_ids = set(pq.read_table(data / "val").column("id").to_pylist())
    conversations = [c for c in conversations_from_table(pq.read_table(data / "conversations"))
                     if c.id in val_ids]  # fmt: skip
    sample = summary["samples"][0]
    turns = conversations[0].turns
    last = max(i for i, t in enumerate(turns) if t.role == "assistant")
    assert sample["prompt"] == turns[last - 1].content
    messages = [t.model_dump() for t in turns[:last]]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)
    with torch.no_grad():
        out_ids = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out_ids[0, len(ids) :], skip_special_tokens=True)
    assert answer == sample["greedy"]
