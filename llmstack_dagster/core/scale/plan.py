"""A simulated plan of the scaled-out curation: tasks, shuffle bytes and memory per task.

``python -m llmstack_dagster.core.scale.plan`` prints it for 1,000 shards and 10 billion
documents (the figures in ``references/scale-out.md``). Sizes are the row layouts the code
writes (:mod:`llmstack_dagster.core.curation.dedup.shuffle_dedup`,
:mod:`~llmstack_dagster.core.curation.dedup.signature_join`), uncompressed; the
corpus-dependent inputs (duplicate pairs per document, id length) are assumptions, named.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, Field

from llmstack_dagster.core.curation.dedup.config import DedupConfig

BAND_ROW_BYTES = 2 + 8 + 8 + 4 + 4  # band, key, gid, shard, row
EXACT_ROW_BYTES = 8 + 8 + 8  # hash_hi, hash_lo, gid
PAIR_ROW_BYTES = 8 + 8 + 4 + 4 + 4 + 4  # gid_a, gid_b, shard/row of a and b
EDGE_BYTES = 16
PARENT_BYTES = 8


class PlanInputs(BaseModel):
    shards: int = Field(1_000, ge=1)
    documents: int = Field(10_000_000_000, ge=1)
    partitions: int = Field(1_024, ge=1, description="reduce partitions P")
    bands_per_read: int = Field(2, ge=1)
    candidates_per_document: float = Field(0.5, ge=0, description="assumed, before verifying")
    edges_per_document: float = Field(0.3, ge=0, description="assumed verified + exact edges")
    id_bytes: int = Field(32, ge=1, description="assumed mean document id length")
    dedup: DedupConfig = Field(default_factory=DedupConfig)


def _gb(n: float) -> float:
    return round(n / 1e9, 2)


def simulate(inputs: PlanInputs) -> dict[str, dict[str, float | int | str]]:
    """Per step: tasks, bytes it shuffles and the memory one task holds (GB)."""
    d = inputs.dedup
    docs, shards, p = inputs.documents, inputs.shards, inputs.partitions
    per_shard = docs / shards
    signature = 4 * d.num_perm
    band_rows = BAND_ROW_BYTES * d.num_bands * docs
    pairs = inputs.candidates_per_document * docs
    edges = inputs.edges_per_document * docs
    index_row = inputs.id_bytes + 8 + 8 + 16 + 4 + 8  # id, domain, created, hash, shingles
    return {
        "per_shard_stages": {
            "tasks_per_stage": shards,
            "documents_per_task": int(per_shard),
            "fingerprint_shard_gb": _gb(per_shard * (signature + index_row)),
        },
        "global_ids_and_removal_table (driver)": {
            "tasks": 1,
            "memory_gb": _gb(docs * (index_row + 8)),
            "note": "one process holds the index, as the local runner does",
        },
        "map (band keys)": {
            "tasks": shards,
            "shuffle_gb": _gb(band_rows + EXACT_ROW_BYTES * docs),
            "memory_gb": _gb(per_shard * (BAND_ROW_BYTES * d.num_bands
                                          + 4 * d.rows_per_band * inputs.bands_per_read)),
            "files": shards * p,
        },  # fmt: skip
        "reduce (candidates)": {
            "tasks": p,
            "memory_gb": _gb((band_rows + EXACT_ROW_BYTES * docs) / p + pairs / p * PAIR_ROW_BYTES),
            "candidate_pairs": int(pairs),
        },
        "verify hop A (attach signature of a)": {
            "tasks": shards,
            "shuffle_gb": _gb(pairs * (PAIR_ROW_BYTES + signature)),
            "memory_gb": _gb(per_shard * signature + pairs / shards * (PAIR_ROW_BYTES + signature)),
        },
        "verify hop B (compare with b)": {
            "tasks": shards,
            "memory_gb": _gb(per_shard * signature + pairs / shards * (PAIR_ROW_BYTES + signature)),
        },
        "components: union-find (default)": {
            "tasks": 1,
            "memory_gb": _gb(docs * PARENT_BYTES + edges * EDGE_BYTES),
        },
        "components: large-star/small-star round": {
            "tasks": 3 * p,
            "shuffle_gb": _gb(3 * 2 * edges * EDGE_BYTES),
            "memory_gb": _gb(2 * edges * EDGE_BYTES / p),
            "rounds": "O(log^2 n); a handful on real duplicate graphs",
        },
    }


def main() -> None:
    inputs = PlanInputs()
    print(json.dumps({"inputs": inputs.model_dump(), "plan": simulate(inputs)}, indent=2))


if __name__ == "__main__":
    main()
