import numpy as np
import pytest

from llmstack_dagster.core.curation.dedup.clusters import _size_bin, exact_duplicate_edges


def _bounds(label: str) -> tuple[int, int]:
    low, _, high = label.partition("-")
    return int(low), int(high or low)


def test_size_bins_do_not_overlap_and_contain_their_sizes() -> None:
    labels = {size: _size_bin(size) for size in range(2, 300)}
    first = [labels[s] for s in (2, 3, 4, 7, 8, 15, 16)]
    assert first == ["2", "3", "4-7", "4-7", "8-15", "8-15", "16-31"]
    ranges = sorted({_bounds(label) for label in labels.values()})
    for size, label in labels.items():
        low, high = _bounds(label)
        assert low <= size <= high
    for (_, high), (low, _) in zip(ranges[:-1], ranges[1:], strict=True):
        assert high < low


def _edges_by_brute_force(hi: np.ndarray, lo: np.ndarray, rank: np.ndarray) -> set[tuple]:
    edges = set()
    for key in set(zip(hi.tolist(), lo.tolist(), strict=True)):
        group = [i for i in range(len(hi)) if (hi[i], lo[i]) == key]
        kept = min(group, key=lambda i: rank[i])
        edges |= {(kept, i) for i in group if i != kept}
    return edges


@pytest.mark.parametrize("n", [0, 1, 2, 500])
@pytest.mark.parametrize("spread", ["few values", "full range"])
def test_exact_edges_link_every_copy_to_the_oldest_of_its_group(n: int, spread: str) -> None:
    rng = np.random.default_rng(n)
    if spread == "few values":  # many high-half ties, some with other low halves
        hi = rng.integers(0, 40, n).astype(np.uint64)
        lo = rng.integers(0, 3, n).astype(np.uint64)
    else:  # real hashes: distinct but for copies; top-bit buckets shared by chance
        hi = rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64) << np.uint64(1)
        lo = rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64)
        copies = rng.integers(0, max(n, 1), n // 5)
        hi[: len(copies)], lo[: len(copies)] = hi[copies], lo[copies]
    rank = rng.permutation(n)
    edges = exact_duplicate_edges(hi, lo, rank)
    assert edges.dtype == np.int64 and edges.shape[1] == 2
    assert len(edges) == len({tuple(e) for e in edges.tolist()})
    assert {tuple(e) for e in edges.tolist()} == _edges_by_brute_force(hi, lo, rank)
