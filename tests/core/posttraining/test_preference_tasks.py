"""The reward-model and DPO tasks on the engine, on toy pairs whose chosen reply is polite."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from support.checkpoints import write_checkpoint
from support.preference_data import write_preference_dataset
from support.training import kill_after_first_checkpoint, run_entrypoint, write_config

from llmstack_dagster.core.models.config import ModelConfig
from llmstack_dagster.core.models.llama import LlamaLM
from llmstack_dagster.core.models.reward import RewardModel
from llmstack_dagster.core.posttraining.pair_data import PairBatches, PreferencePairs
from llmstack_dagster.core.posttraining.preference_index import load_preference_index
from llmstack_dagster.core.posttraining.preference_tasks import ReferencedBatches
from llmstack_dagster.core.posttraining.reference import (
    ReferenceCacheError,
    ReferenceValues,
    load_reference,
    reference_key,
    write_reference_cache,
)
from llmstack_dagster.core.training.config import TrainConfig
from llmstack_dagster.core.training.engine import train
from llmstack_dagster.core.training.init_weights import (
    init_model_config,
    load_model,
    weights_digest,
)
from llmstack_dagster.core.training.metrics import read_metrics
from llmstack_dagster.core.training.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def setup(tokenizer_file: Path, tmp_path_factory) -> tuple[Path, Path]:
    """A toy preference dataset and a small 'SFT' checkpoint to start from."""
    root = tmp_path_factory.mktemp("pref")
    data = write_preference_dataset(root / "data", tokenizer_file)
    vocab = load_tokenizer(tokenizer_file).get_vocab_size()
    cfg = ModelConfig(vocab_size=vocab, d_model=48, n_layers=2, n_heads=4, n_kv_heads=2,
                      ffn_hidden=96, max_seq_len=64)  # fmt: skip
    _, checkpoint = write_checkpoint(root / "sft", cfg)
    return data, checkpoint


def config(data: Path, out: Path, init: Path, objective: str, **extra) -> TrainConfig:  # noqa: ANN003
    return TrainConfig.model_validate({
        "data_dir": str(data), "out_dir": str(out), "objective": objective,
        "init": {"path": str(init)}, "seq_len": 63, "micro_batch_size": 4,
        "grad_accum_steps": 2, "max_steps": 24, "log_every": 4, "checkpoint_every": 12,
        "cpu_threads": 1, "optim": {"lr": 3e-3, "warmup_steps": 2, "weight_decay": 0.0},
        "eval": {"every": 12, "batches": 2, "max_new_tokens": 4}, **extra,
    })  # fmt: skip


def evaluations(out: Path) -> list[dict]:
    return [r for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "eval"]


def test_reward_model_learns_the_preference_and_exports_to_transformers(setup, tmp_path) -> None:
    from transformers import AutoModelForSequenceClassification

    data, init = setup
    result = train(config(data, tmp_path / "rm", init, "reward"), log=lambda _: None)
    evals = evaluations(tmp_path / "rm")
    assert [r["step"] for r in evals] == [0, 12, 24]
    assert evals[-1]["val/accuracy"] == 1.0 and evals[-1]["val/loss"] < evals[0]["val/loss"]
    assert evals[-1]["val/margin"] > 1.0
    # the HF sequence-classification export scores as our reward model does
    index = load_preference_index(data)
    pairs = PreferencePairs(data, index, "val")
    batch = pairs.batch([0, 1])
    ours = load_model(result.checkpoint, RewardModel)
    with torch.no_grad():
        expected = ours.eval()(batch["input_ids"], batch["last_index"])
        hf = AutoModelForSequenceClassification.from_pretrained(result.hf_dir).eval()
        width = int(batch["last_index"].max()) + 1
        got = hf(batch["input_ids"][:, :width]).logits[:, 0]
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_dpo_reads_its_reference_cache_and_learns(setup, tmp_path) -> None:
    data, init = setup
    index = load_preference_index(data)
    key = reference_key(weights_digest(init), index)

    reference = load_model(init)
    cache = tmp_path / "ref"
    rows = write_reference_cache(reference, data, index, key, cache, 8, torch.device("cpu"),
                                 log=lambda _: None)  # fmt: skip
    assert rows == 56
    cfg = config(data, tmp_path / "dpo", init, "dpo", reference_logprobs=str(cache))
    train(cfg, log=lambda _: None)
    evals = evaluations(tmp_path / "dpo")
    # at step 0 the policy is its reference: every implicit reward is exactly 0
    assert evals[0]["val/rewards/chosen"] == pytest.approx(0.0, abs=1e-5)
    assert evals[0]["val/loss"] == pytest.approx(0.6931, abs=1e-3)  # -log sigmoid(0)
    assert evals[-1]["val/rewards/accuracy"] == 1.0
    assert evals[-1]["val/rewards/margin"] > evals[0]["val/rewards/margin"] + 0.5
    assert evals[-1]["val/loss"] < 0.5


def test_a_missing_or_mismatched_reference_cache_is_an_error(setup, tmp_path) -> None:
    data, init = setup
    with pytest.raises(ReferenceCacheError, match="materialize reference_logprobs"):
        train(config(data, tmp_path / "a", init, "dpo", reference_logprobs=str(tmp_path / "x")),
              log=lambda _: None)  # fmt: skip
    index = load_preference_index(data)
    cache = tmp_path / "ref"
    other = reference_key("0" * 64, index)  # another model's log-probabilities
    write_reference_cache(LlamaLM(init_model_config(init)), data, index, other, cache, 8,
                          torch.device("cpu"), log=lambda _: None)  # fmt: skip
    with pytest.raises(ReferenceCacheError, match="weights_sha256: cached '0000"):
        train(config(data, tmp_path / "b", init, "dpo", reference_logprobs=str(cache)),
              log=lambda _: None)  # fmt: skip
    pairs = PreferencePairs(data, index, "train")
    wrong_data = other.model_copy(update={"data_version": "other"})
    with pytest.raises(ReferenceCacheError, match="data_version"):
        load_reference(cache, wrong_data, pairs, "train")


def test_pair_batches_resume_from_their_position(setup) -> None:
    data, _ = setup
    index = load_preference_index(data)
    pairs = PreferencePairs(data, index, "train")
    values = torch.arange(len(pairs), dtype=torch.float32)
    reference = ReferenceValues(chosen=values, rejected=-values)
    first = ReferencedBatches(PairBatches(pairs, 4, 2, seed=3), reference)
    for _ in range(7):  # past an epoch boundary (48 pairs, 8 a step)
        first.next_step()
    second = ReferencedBatches(PairBatches(pairs, 4, 2, seed=3), reference)
    second.position = first.position
    for a, b in zip(first.next_step(), second.next_step(), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert torch.equal(a["ref_chosen"], values[a["pair_index"]])


def test_dpo_resumes_exactly_after_a_kill(setup, tmp_path) -> None:
    data, init = setup
    index = load_preference_index(data)
    reference = load_model(init)
    cache = tmp_path / "ref"
    write_reference_cache(reference, data, index, reference_key(weights_digest(init), index),
                          cache, 8, torch.device("cpu"), log=lambda _: None)  # fmt: skip
    cfg = config(data, tmp_path / "whole", init, "dpo", reference_logprobs=str(cache),
                 max_steps=40, checkpoint_every=8, log_every=1, export_hf=True)  # fmt: skip
    run_entrypoint(write_config(cfg, tmp_path / "whole.json"))

    def losses(out: Path) -> list[float]:
        return [r["train/loss"] for r in read_metrics(out / "metrics.jsonl") if "train/loss" in r]

    killed = tmp_path / "killed"
    config_file = write_config(cfg.model_copy(update={"out_dir": str(killed)}), tmp_path / "k.json")
    kill_after_first_checkpoint(config_file, killed)
    result = run_entrypoint(config_file)
    assert "resumed from" in result.stderr
    assert losses(killed) == losses(tmp_path / "whole") and len(losses(killed)) == 40
    assert (killed / "hf" / "config.json").is_file()  # the causal export, with the template
    assert "chat_template" in (killed / "hf" / "tokenizer_config.json").read_text()
