"""Large-star/small-star rounds find the components union-find finds, roots included."""

import numpy as np
import pytest

from llmstack_dagster.core.curation.dedup.star_components import (
    large_star,
    roots_from_stars,
    small_star,
    star_components,
    symmetric,
)
from llmstack_dagster.core.curation.dedup.star_rounds import (
    partitioned_components,
    write_canonical,
)
from llmstack_dagster.core.curation.dedup.union_find import connected_components
from llmstack_dagster.core.scale.shard_map import LocalShardMap


def random_graph(seed: int) -> tuple[int, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 1500))
    m = int(rng.integers(0, 2 * n))
    return n, rng.integers(0, n, m), rng.integers(0, n, m)


@pytest.mark.parametrize("seed", range(20))
def test_in_memory_rounds_equal_union_find(seed: int) -> None:
    n, a, b = random_graph(seed)
    node, root = star_components(a, b)
    assert np.array_equal(roots_from_stars(n, node, root), connected_components(n, a, b))


def test_a_path_needs_several_rounds_and_ends_as_one_star() -> None:
    a, b = np.arange(1, 64), np.arange(0, 63)
    node, root = star_components(a[::-1], b[::-1])
    assert node.tolist() == list(range(1, 64)) and set(root.tolist()) == {0}


def test_one_large_star_and_small_star_step() -> None:
    # path 0-1-2-3: large-star links 2 and 3 to m(1)=0 and m(2)=1
    src, dst = symmetric(np.array([1, 2, 3]), np.array([0, 1, 2]))
    big, small = large_star(src, dst)
    assert sorted(zip(big.tolist(), small.tolist(), strict=True)) == [(1, 0), (2, 0), (3, 1)]
    big, small = small_star(np.array([3, 3]), np.array([1, 2]))
    assert sorted(zip(big.tolist(), small.tolist(), strict=True)) == [(2, 1), (3, 1)]


@pytest.mark.parametrize("seed", range(3))
def test_partitioned_rounds_equal_union_find(storage, seed: int) -> None:
    n, a, b = random_graph(100 + seed)
    half = len(a) // 2
    write_canonical(storage, "cc", "w0", a[:half], b[:half], 3)
    write_canonical(storage, "cc", "w1", a[half:], b[half:], 3)
    node, root = partitioned_components(storage, LocalShardMap(), "cc", 3)
    assert np.array_equal(roots_from_stars(n, node, root), connected_components(n, a, b))
