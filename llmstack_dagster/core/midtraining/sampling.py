"""Which documents train, and how often: the target's held-out share, its epochs, the replay.

A budget is met by the prefix of a random order whose exact tokens come closest to it, so it
is off by at most half a document's tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

OVERSHOOT = 1.1  # tokenize this much more of the replay order than the estimate says is needed
FIRST_TOKENS_PER_BYTE = 0.25  # about 4 bytes a token, until the first exact counts


def closest_prefix(tokens: np.ndarray, budget: float) -> int:
    """How many leading items have the token sum closest to ``budget`` (on a tie: fewer)."""
    cumulative = np.cumsum(tokens)
    take = int(np.searchsorted(cumulative, budget, side="right"))
    below = cumulative[take - 1] if take else 0
    if take < len(tokens) and cumulative[take] - budget < budget - below:
        take += 1
    return take


def heldout_mask(
    domain_of: np.ndarray, keys: np.ndarray, eligible: np.ndarray, fraction: float, min_docs: int
) -> np.ndarray:
    """Per domain, the eligible documents with a key below ``fraction``, at least ``min_docs``
    of them (lowest keys first) but never every one, so each domain keeps a training document."""
    mask = np.zeros(len(keys), dtype=bool)
    for domain in np.unique(domain_of):
        members = np.nonzero(eligible & (domain_of == domain))[0]
        count = max(int((keys[members] < fraction).sum()), min_docs)
        count = min(count, len(members) - 1)
        if count > 0:
            mask[members[np.argsort(keys[members], kind="stable")[:count]]] = True
    return mask


@dataclass
class TargetEpochs:
    copies: np.ndarray  # int32 per target row: how many times it is trained on
    full_epochs: int
    partial: float  # the last, partial epoch: its share of the available tokens
    available_tokens: int  # one epoch of the training pool
    shortfall: int  # target tokens asked for that max_epochs could not give

    @property
    def epochs(self) -> float:
        return self.full_epochs + self.partial


def fill_target_epochs(
    tokens: np.ndarray, pool: np.ndarray, budget: int, max_epochs: float, rng: np.random.Generator
) -> TargetEpochs:
    """Every pool document ``k`` times for the whole epochs the budget (capped at
    ``max_epochs``) allows, then the prefix of a seeded permutation closest to the rest."""
    available = int(tokens[pool].sum())
    allowed = min(float(budget), max_epochs * available)
    full = int(np.floor(allowed / available + 1e-9)) if available else 0
    copies = np.where(pool, full, 0).astype(np.int32)
    members = np.nonzero(pool)[0]
    order = members[rng.permutation(len(members))]
    take = closest_prefix(tokens[order], allowed - full * available)
    copies[order[:take]] += 1
    realized = int((tokens * copies).sum())
    return TargetEpochs(
        copies=copies,
        full_epochs=full,
        partial=float(tokens[order[:take]].sum() / available) if available else 0.0,
        available_tokens=available,
        shortfall=max(0, budget - realized) if budget > max_epochs * available else 0,
    )


def sample_replay(
    order: np.ndarray,
    text_bytes: np.ndarray,
    budget: float,
    count: Callable[[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """The leading rows of ``order`` (a random order) whose exact tokens sum closest to
    ``budget``, and their tokens.

    ``count`` (rows -> exact tokens) sees only a prefix of ``order`` a little longer than
    needed, in rounds sized by the tokens per byte counted so far.
    """
    cumulative_bytes = np.cumsum(text_bytes[order])
    counted: list[np.ndarray] = []
    done = total = 0
    per_byte = FIRST_TOKENS_PER_BYTE
    while done < len(order) and total < budget:
        start_bytes = cumulative_bytes[done - 1] if done else 0
        need = start_bytes + (budget - total) / per_byte * OVERSHOOT
        stop = min(len(order), int(np.searchsorted(cumulative_bytes, need)) + 1)
        counted.append(count(order[done:stop]))
        total += int(counted[-1].sum())
        done = stop
        per_byte = total / max(int(cumulative_bytes[done - 1]), 1)
    tokens = np.concatenate([np.empty(0, np.int64), *counted])
    take = closest_prefix(tokens, budget)
    return order[:take], tokens[:take]
