"""Weighted sampling without replacement by the Gumbel top-k trick.

Adding independent Gumbel(0, 1) noise to log-weights and keeping the k largest keys draws k
items without replacement with probabilities proportional to the weights (Kool et al. 2019,
"Stochastic Beams and Where to Find Them"); DSIR resamples this way (Xie et al. 2023).
"""

from __future__ import annotations

import numpy as np


def gumbel_keys(log_weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Perturbed keys ``log w + G``; sorting them descending gives a weighted random order."""
    return np.asarray(log_weights, dtype=np.float64) + rng.gumbel(size=len(log_weights))


def gumbel_top_k(log_weights: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``k`` items drawn without replacement, ``P ∝ exp(log_weights)``."""
    if not 0 <= k <= len(log_weights):
        raise ValueError(f"k={k} outside [0, {len(log_weights)}]")
    if k == 0:
        return np.empty(0, dtype=np.int64)
    keys = gumbel_keys(log_weights, rng)
    return np.argsort(-keys, kind="stable")[:k]
