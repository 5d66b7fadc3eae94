import numpy as np
import pytest

from llmstack_dagster.core.midtraining.sampling import (
    closest_prefix,
    fill_target_epochs,
    heldout_mask,
    sample_replay,
)


def test_closest_prefix() -> None:
    tokens = np.array([10, 10, 10])
    assert [closest_prefix(tokens, b) for b in (0, 4, 6, 15, 16, 29, 100)] == [0, 0, 1, 1, 2, 3, 3]


def test_heldout_share_has_a_minimum_and_leaves_a_training_document() -> None:
    keys = np.array([0.9, 0.01, 0.5, 0.02, 0.7, 0.3, 0.8])
    domain_of = np.array([0, 0, 0, 0, 1, 1, 2])
    eligible = np.array([True, True, True, False, True, True, True])
    mask = heldout_mask(domain_of, keys, eligible, fraction=0.05, min_docs=2)
    # domain 0: the key below 5% and the next lowest eligible one (0.02 is not eligible);
    # domain 1: one of two (one stays for training); domain 2: its only document trains
    assert mask.tolist() == [False, True, True, False, False, True, False]
    assert heldout_mask(domain_of, keys, eligible, 0.0, 0).sum() == 0


def test_whole_epochs_then_a_seeded_partial_one() -> None:
    tokens = np.array([100, 50, 50, 100, 7])
    pool = np.array([True, True, True, True, False])
    rng = np.random.default_rng(0)
    epochs = fill_target_epochs(tokens, pool, budget=750, max_epochs=4.0, rng=rng)
    assert epochs.full_epochs == 2 and epochs.available_tokens == 300
    assert epochs.copies[4] == 0 and set(epochs.copies[:4]) <= {2, 3}
    assert int((tokens * epochs.copies).sum()) == 750 and epochs.partial == pytest.approx(0.5)
    assert epochs.epochs == pytest.approx(2.5) and epochs.shortfall == 0
    under = fill_target_epochs(tokens, pool, 120, 4.0, np.random.default_rng(0))
    assert under.full_epochs == 0 and abs(int((tokens * under.copies).sum()) - 120) <= 50


def test_a_small_pool_stops_at_max_epochs_with_a_shortfall() -> None:
    tokens = np.array([10, 20])
    pool = np.array([True, True])
    epochs = fill_target_epochs(tokens, pool, 1000, 4.0, np.random.default_rng(0))
    assert epochs.copies.tolist() == [4, 4] and epochs.shortfall == 1000 - 120


def test_replay_tokenizes_only_a_prefix_of_its_order() -> None:
    text_bytes = np.full(1000, 40)
    order = np.random.default_rng(1).permutation(1000)
    seen: list[int] = []

    def count(rows: np.ndarray) -> np.ndarray:
        seen.extend(rows.tolist())
        return text_bytes[rows] // 4 + rows % 3  # 10-12 tokens a row

    rows, tokens = sample_replay(order, text_bytes, 500, count)
    assert rows.tolist() == order[: len(rows)].tolist() and len(seen) < 100
    assert abs(int(tokens.sum()) - 500) <= 6
    assert tokens.tolist() == count(rows).tolist()
    everything, _ = sample_replay(order, text_bytes, 10**6, count)
    assert len(everything) == 1000
    assert len(sample_replay(order, text_bytes, 0, count)[0]) == 0
