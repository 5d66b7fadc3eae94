"""UniMax (Chung et al. 2023, "UniMax: Fairer and More Effective Language Sampling for
Large-Scale Multilingual Pretraining", Algorithm 1).

Sources are visited from smallest to largest; each gets an equal share of the budget still
unassigned, ``remaining / sources_left``, capped at ``max_epochs`` times its size. What a small
source cannot use flows on to the larger ones. When even the largest is capped (budget above
``max_epochs x total``) the rest of the budget stays unallocated.
"""

from __future__ import annotations

from collections.abc import Mapping


def unimax_allocation(
    sizes: Mapping[str, float], budget: float, max_epochs: float = 1.0
) -> dict[str, float]:
    """Tokens to sample per source; the sum is ``min(budget, max_epochs * sum(sizes))``."""
    if budget < 0 or max_epochs <= 0:
        raise ValueError("budget must be >= 0 and max_epochs > 0")
    order = sorted(sizes, key=lambda name: (sizes[name], name))
    remaining = float(budget)
    allocation: dict[str, float] = {}
    for position, name in enumerate(order):
        share = remaining / (len(order) - position)
        allocation[name] = min(share, max_epochs * sizes[name])
        remaining -= allocation[name]
    return allocation
