"""Global exact + MinHash-LSH fuzzy deduplication, keep-oldest (Parmar et al. 2024, stage 1).

Runners for the three assets: :func:`compute_fingerprints` (per domain),
:func:`find_duplicate_clusters` (all domains), :func:`apply_removals` (per domain).
"""

from llmstack_dagster.core.curation.dedup.clusters import REMOVAL_SCHEMA, find_duplicate_clusters
from llmstack_dagster.core.curation.dedup.config import DedupConfig
from llmstack_dagster.core.curation.dedup.exact import exact_hash128
from llmstack_dagster.core.curation.dedup.fingerprints import compute_fingerprints
from llmstack_dagster.core.curation.dedup.minhash import MinHasher, estimated_jaccard
from llmstack_dagster.core.curation.dedup.removal import apply_removals

__all__ = [
    "REMOVAL_SCHEMA",
    "DedupConfig",
    "MinHasher",
    "apply_removals",
    "compute_fingerprints",
    "estimated_jaccard",
    "exact_hash128",
    "find_duplicate_clusters",
]
