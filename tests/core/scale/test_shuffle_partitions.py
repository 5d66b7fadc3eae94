"""Hash partitioning and the partition files of a shuffle."""

import numpy as np
import pyarrow as pa

from llmstack_dagster.core.scale.shuffle import hash_partition, read_partition, write_partitions
from llmstack_dagster.core.storage import Storage


def test_hash_partition_is_deterministic_balanced_and_salted() -> None:
    keys = np.random.default_rng(0).integers(0, 2**63, 40_000).astype(np.uint64)
    part = hash_partition(keys, 3, 8)
    assert part.min() >= 0 and part.max() < 8
    assert np.array_equal(part, hash_partition(keys.copy(), 3, 8))
    counts = np.bincount(part, minlength=8)
    assert counts.min() > 0.9 * len(keys) / 8
    assert (part != hash_partition(keys, 4, 8)).mean() > 0.8  # (band, key): band matters
    per_row = hash_partition(keys[:5], np.arange(5, dtype=np.uint64), 8)
    assert [hash_partition(keys[i : i + 1], i, 8)[0] for i in range(5)] == per_row.tolist()


def test_rows_land_in_their_partition_in_writer_order(storage: Storage) -> None:
    schema = pa.schema([pa.field("v", pa.int64())])
    values = np.arange(50)
    part = values % 4
    for writer in ("w0", "w1"):
        table = pa.table({"v": values + (100 if writer == "w1" else 0)}, schema=schema)
        write_partitions(storage, "shuffle", writer, table, part, 5)
    for p in range(5):
        got = read_partition(storage, "shuffle", p, schema)["v"].to_pylist()
        mine = [v for v in values.tolist() if v % 4 == p]
        assert got == mine + [v + 100 for v in mine]
    assert read_partition(storage, "shuffle", 4, schema).num_rows == 0
