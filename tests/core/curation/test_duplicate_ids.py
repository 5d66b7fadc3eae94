"""Duplicate ids in bounded memory: the same answer with one bucket and with many."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from llmstack_dagster.core.curation.duplicate_ids import find_duplicate_ids
from llmstack_dagster.core.storage import ShardInfo, Storage


def _shards(storage: Storage, id_lists: list[list[str]]) -> list[ShardInfo]:
    shards = []
    for k, ids in enumerate(id_lists):
        rel = f"ids/part-{k}.parquet"
        size = storage.write_table(rel, pa.table({"id": pa.array(ids, pa.string())}))
        shards.append(ShardInfo(path=rel, rows=len(ids), bytes=size))
    return shards


def _brute_force(id_lists: list[list[str]]) -> list[tuple[int, int, int, int]]:
    first: dict[str, tuple[int, int]] = {}
    out = []
    for s, ids in enumerate(id_lists):
        for r, doc_id in enumerate(ids):
            if doc_id in first:
                out.append((s, r, *first[doc_id]))
            else:
                first[doc_id] = (s, r)
    return out


@pytest.mark.parametrize("bucket_rows", [1_000_000, 7, 1])
def test_matches_a_brute_force_set(storage: Storage, bucket_rows: int) -> None:
    rng = random.Random(3)
    id_lists = [[f"src/{rng.randrange(400)}" for _ in range(rng.randrange(0, 300))]
                for _ in range(6)]  # fmt: skip
    found = find_duplicate_ids(storage, _shards(storage, id_lists), bucket_rows=bucket_rows)
    got = list(zip(found.shard.tolist(), found.row.tolist(), found.first_shard.tolist(),
                   found.first_row.tolist(), strict=True))  # fmt: skip
    expected = _brute_force(id_lists)
    assert len(expected) > 100
    assert got == expected


def test_no_duplicates_and_no_shards(storage: Storage) -> None:
    assert len(find_duplicate_ids(storage, [])) == 0
    shards = _shards(storage, [["a", "b"], ["c"]])
    assert len(find_duplicate_ids(storage, shards, bucket_rows=1)) == 0


def test_rows_of_one_shard(storage: Storage) -> None:
    shards = _shards(storage, [["a", "b", "a"], ["b", "x", "a"]])
    found = find_duplicate_ids(storage, shards)
    assert found.rows_of(0).tolist() == [2] and found.rows_of(1).tolist() == [0, 2]
