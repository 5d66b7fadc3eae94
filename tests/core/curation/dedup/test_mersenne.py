import numba
import numpy as np

from llmstack_dagster.core.curation.dedup.mersenne import fold61, mulmod61

P = (1 << 61) - 1


@numba.njit
def _mulmod_all(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    out = np.empty(a.shape[0], np.uint64)
    for i in range(a.shape[0]):
        out[i] = mulmod61(a[i], x[i])
    return out


@numba.njit
def _fold_all(x: np.ndarray) -> np.ndarray:
    out = np.empty(x.shape[0], np.uint64)
    for i in range(x.shape[0]):
        out[i] = fold61(x[i])
    return out


def test_mulmod61_matches_big_integers() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, P, 5000, dtype=np.uint64)
    x = rng.integers(0, P, 5000, dtype=np.uint64)
    edge = np.array([P - 1, P - 1, 0, 1, (1 << 32) - 1, 1 << 60], dtype=np.uint64)
    a, x = np.r_[a, edge], np.r_[x, edge[::-1]]
    got = _mulmod_all(a, x)
    assert [int(v) for v in got] == [int(p) * int(q) % P for p, q in zip(a, x, strict=True)]


def test_fold61_reduces_any_uint64() -> None:
    values = np.array([0, P, P + 5, 2 * P, (1 << 64) - 1, 12345], dtype=np.uint64)
    assert [int(v) for v in _fold_all(values)] == [int(v) % P for v in values]
