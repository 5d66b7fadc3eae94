"""Connected components by large-star / small-star rounds (Kiveris et al. 2014, "Connected
Components in MapReduce and Beyond"), for edge lists that do not fit one task's memory.

Both operations look at one node's neighbourhood only, so each round is a map over
partitions of nodes. With ``m(u)`` the smallest of ``u`` and its neighbours:

- large-star: every neighbour ``v > u`` of ``u`` is linked to ``m(u)`` instead;
- small-star: ``u`` and every neighbour ``v < u`` are linked to ``m(u)`` instead.

Alternating them converges (O(log^2 n) rounds) to one star per component whose centre is its
smallest node, the same root as :func:`.union_find.connected_components`. Edges are arrays
``(src, dst)``; a round's output is oriented ``larger -> smaller`` and free of repeats.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from llmstack_dagster.core.curation.dedup.lsh import band_keys

Edges = tuple[np.ndarray, np.ndarray]


def oriented(src: np.ndarray, dst: np.ndarray) -> Edges:
    """Distinct edges as (larger, smaller), self-loops dropped."""
    big, small = np.maximum(src, dst), np.minimum(src, dst)
    keep = big != small
    if not keep.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pairs = np.unique(np.stack([big[keep], small[keep]], 1).astype(np.int64), axis=0)
    return pairs[:, 0], pairs[:, 1]


def symmetric(src: np.ndarray, dst: np.ndarray) -> Edges:
    """Both directions of every edge (large-star reads whole neighbourhoods)."""
    return np.concatenate([src, dst]), np.concatenate([dst, src])


def _min_per_node(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``m(src[i])``: the smallest of the node and its listed neighbours, per row."""
    nodes, inverse = np.unique(src, return_inverse=True)
    smallest = nodes.copy()
    np.minimum.at(smallest, inverse, dst)
    return smallest[inverse]


def large_star(src: np.ndarray, dst: np.ndarray) -> Edges:
    """Given every ``(u, v)`` with ``v`` a neighbour of ``u``: the edges ``(v, m(u))``, v > u."""
    if src.size == 0:
        return oriented(src, dst)
    m = _min_per_node(src, dst)
    larger = dst > src
    return oriented(dst[larger], m[larger])


def small_star(src: np.ndarray, dst: np.ndarray) -> Edges:
    """Given edges ``(u, v)`` with ``v < u``: ``u`` and each such ``v`` linked to ``m(u)``."""
    if src.size == 0:
        return oriented(src, dst)
    m = _min_per_node(src, dst)
    return oriented(np.concatenate([dst, src]), np.concatenate([m, m]))


def edge_digest(src: np.ndarray, dst: np.ndarray) -> tuple[int, int]:
    """(count, order-independent hash) of a distinct edge set: equal digests, equal sets."""
    if src.size == 0:
        return 0, 0
    pair = np.stack([src, dst], 1).astype(np.uint64).view(np.uint32).reshape(len(src), 4)
    return int(src.size), int(np.bitwise_xor.reduce(band_keys(pair, 7)))


def star_components(src: np.ndarray, dst: np.ndarray, max_rounds: int = 64) -> Edges:
    """(node, root) for every node on an edge; root is the smallest node of its component."""
    return converge(lambda e: small_star(*large_star(*symmetric(*e))), oriented(src, dst),
                    max_rounds)  # fmt: skip


def converge(round_fn: Callable[[Edges], Edges], edges: Edges, max_rounds: int) -> Edges:
    """Apply ``round_fn`` until the edge set stops changing; return it as (node, root)."""
    digest = edge_digest(*edges)
    for _ in range(max_rounds):
        edges = round_fn(edges)
        new = edge_digest(*edges)
        if new == digest:
            return edges
        digest = new
    raise RuntimeError(f"large-star/small-star did not converge in {max_rounds} rounds")


def roots_from_stars(n: int, node: np.ndarray, root: np.ndarray) -> np.ndarray:
    """Root of every node 0..n-1 (itself when on no edge), from converged stars."""
    roots = np.arange(n, dtype=np.int64)
    roots[node] = root
    return roots
