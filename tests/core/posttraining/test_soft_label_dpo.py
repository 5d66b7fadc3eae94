"""DPO with soft labels (the RL-CAI target): the loss against hand-computed values, plain DPO
at p = 1, and the labels carried from the pair files into the batches."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from support.preference_data import write_preference_dataset

from llmstack_dagster.core.models.config import ModelConfig
from llmstack_dagster.core.models.llama import LlamaLM
from llmstack_dagster.core.posttraining.logprobs import sequence_logprobs
from llmstack_dagster.core.posttraining.pair_data import PreferencePairs
from llmstack_dagster.core.posttraining.preference_index import load_preference_index
from llmstack_dagster.core.posttraining.preference_losses import (
    PreferenceLossConfig,
    preference_loss,
)
from llmstack_dagster.core.posttraining.preference_tasks import DirectPreference
from llmstack_dagster.core.training.config import TrainConfig
from llmstack_dagster.core.training.tokenizer import load_tokenizer

# policy chosen, policy rejected, reference chosen, reference rejected (summed log-probs)
VALUES = ([-10.0, -20.0, -5.0], [-12.0, -18.0, -9.0], [-11.0, -19.0, -6.0], [-11.5, -19.5, -7.0])
LOGPS = [torch.tensor(v, dtype=torch.float64) for v in VALUES]


def _logsig(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_soft_label_loss_by_hand() -> None:
    cfg = PreferenceLossConfig(beta=0.1)
    labels = torch.tensor([1.0, 0.7, 0.25], dtype=torch.float64)
    losses, _ = preference_loss(cfg, *LOGPS, labels=labels)
    for i, p in enumerate(labels.tolist()):
        delta = (LOGPS[0][i] - LOGPS[2][i]) - (LOGPS[1][i] - LOGPS[3][i])
        z = 0.1 * float(delta)
        expected = -(p * _logsig(z) + (1 - p) * _logsig(-z))
        assert float(losses[i]) == pytest.approx(expected, abs=1e-12)
    plain, _ = preference_loss(cfg, *LOGPS)
    assert float(losses[0]) == pytest.approx(float(plain[0]), abs=1e-15)  # p = 1 is DPO
    # the label is smoothed like cDPO's: at p = 1 it is cDPO with the same ε
    smooth = PreferenceLossConfig(beta=0.1, label_smoothing=0.1)
    ones = torch.ones(3, dtype=torch.float64)
    soft, _ = preference_loss(smooth, *LOGPS, labels=ones)
    torch.testing.assert_close(soft, preference_loss(smooth, *LOGPS)[0])
    # p = 0.5 gives no gradient at Δ = 0
    z = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    zero = torch.zeros(1, dtype=torch.float64)
    half, _ = preference_loss(cfg, z, zero, zero, zero, labels=torch.tensor([0.5]))
    half.sum().backward()
    assert float(z.grad) == pytest.approx(0.0, abs=1e-15)


def test_soft_labels_are_refused_by_losses_without_a_target() -> None:
    with pytest.raises(ValueError, match="soft labels apply to"):
        preference_loss(PreferenceLossConfig(loss="hinge"), *LOGPS, labels=torch.ones(3))


def test_pairs_with_a_label_column_carry_it_into_batches(tokenizer_file: Path, tmp_path) -> None:
    folder = write_preference_dataset(tmp_path / "pairs", tokenizer_file, pairs=8, val=2)
    index = load_preference_index(folder)
    assert "label" not in PreferencePairs(folder, index, "train").batch([0, 1])
    path = folder / "train" / "part-00000.parquet"
    table = pq.read_table(path)
    labels = [0.5 + i / 20 for i in range(table.num_rows)]
    pq.write_table(table.append_column("label", [labels]), path)
    batch = PreferencePairs(folder, index, "train").batch([3, 1])
    torch.testing.assert_close(batch["label"], torch.tensor([labels[3], labels[1]]))


def test_the_dpo_objective_trains_on_the_batch_labels(tokenizer_file: Path, tmp_path) -> None:
    folder = write_preference_dataset(tmp_path / "pairs", tokenizer_file, pairs=4, val=1)
    path = folder / "train" / "part-00000.parquet"
    table = pq.read_table(path)
    pq.write_table(table.append_column("label", [[0.9, 0.6, 0.75, 1.0]]), path)
    batch = PreferencePairs(folder, load_preference_index(folder), "train").batch([0, 1, 2, 3])
    batch |= {"ref_chosen": torch.full((4,), -30.0), "ref_rejected": torch.full((4,), -30.0)}
    vocab = load_tokenizer(tokenizer_file).get_vocab_size()
    torch.manual_seed(0)
    model = LlamaLM(
        ModelConfig(
            vocab_size=vocab,
            d_model=32,
            n_layers=1,
            n_heads=2,
            n_kv_heads=1,
            ffn_hidden=64,
            max_seq_len=64,
        )
    )
    cfg = TrainConfig.model_validate(
        {"data_dir": str(folder), "out_dir": str(tmp_path / "o"), "objective": "dpo"}
    )
    losses, _ = DirectPreference(cfg).terms(model, batch)
    logp, _ = sequence_logprobs(model, batch["input_ids"], batch["targets"])
    expected, _ = preference_loss(
        cfg.preference.dpo,
        logp[:4],
        logp[4:],
        batch["ref_chosen"],
        batch["ref_rejected"],
        labels=batch["label"],
    )
    torch.testing.assert_close(losses, expected)
    unlabelled, _ = preference_loss(
        cfg.preference.dpo, logp[:4], logp[4:], batch["ref_chosen"], batch["ref_rejected"]
    )
    assert not torch.allclose(losses[:3], unlabelled[:3])


def test_soft_label_bradley_terry_by_hand() -> None:
    """The preference model of the online-RL route of RL-CAI: cross-entropy to the soft label;
    p = 1 is the plain Bradley–Terry loss; at p = 0.5 equal rewards are the optimum."""
    from llmstack_dagster.core.posttraining.preference_losses import reward_loss

    chosen = torch.tensor([1.0, 0.2, -0.3], dtype=torch.float64)
    rejected = torch.tensor([0.5, 0.4, -0.3], dtype=torch.float64)
    p = torch.tensor([0.8, 0.6, 1.0], dtype=torch.float64)
    soft, _ = reward_loss(chosen, rejected, labels=p)
    d = (chosen - rejected).tolist()
    expected = [
        -(q * math.log(1 / (1 + math.exp(-x))) + (1 - q) * math.log(1 / (1 + math.exp(x))))
        for q, x in zip(p.tolist(), d, strict=True)
    ]
    assert soft.tolist() == pytest.approx(expected, abs=1e-12)
    hard, _ = reward_loss(chosen, rejected)
    assert reward_loss(chosen, rejected, labels=torch.ones(3))[0].tolist() == pytest.approx(
        hard.tolist(), abs=1e-12
    )
    z = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    reward_loss(z, torch.zeros(1, dtype=torch.float64), labels=torch.tensor([0.5]))[
        0
    ].sum().backward()
    assert float(z.grad) == pytest.approx(0.0, abs=1e-15)
