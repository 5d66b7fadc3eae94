import numpy as np
import pyarrow as pa

from llmstack_dagster.core.midtraining.key_sort import KeySort
from llmstack_dagster.core.storage import ShardWriter, Storage

SCHEMA = pa.schema([pa.field("id", pa.string(), nullable=False)])


def test_rows_come_out_in_key_order_through_bounded_partitions(storage: Storage) -> None:
    rng = np.random.default_rng(0)
    keys = rng.random(1000)
    sort = KeySort(storage, "sort", SCHEMA, expected_rows=1000, rows_per_partition=100)
    assert sort.num_partitions == 10
    for start in range(0, 1000, 250):  # in several tables, as shards come
        ids = [f"doc-{i}" for i in range(start, start + 250)]
        sort.add(pa.table({"id": ids}), keys[start : start + 250])
    writer = ShardWriter(storage, "out", SCHEMA, max_rows=300)
    sort.write_to(writer)
    shards = writer.close()
    out = [i for s in shards for i in storage.read_table(s.path).column("id").to_pylist()]
    assert out == [f"doc-{i}" for i in np.argsort(keys, kind="stable")]
    assert storage.read_table(shards[0].path).schema.names == ["id"]
    assert not storage.exists("sort")
