import numpy as np
import pyarrow as pa

from llmstack_dagster.core.curation.selection.external_shuffle import ExternalShuffle
from llmstack_dagster.core.storage import ShardWriter, iter_shard_tables

SCHEMA = pa.schema([pa.field("n", pa.int64())])


def _shuffled(storage, seed: int) -> list[int]:
    shuffle = ExternalShuffle(storage, "spill", SCHEMA, 5000, 700, np.random.default_rng(seed))
    for start in range(0, 5000, 1000):
        shuffle.add(pa.table({"n": np.arange(start, start + 1000)}, schema=SCHEMA))
    writer = ShardWriter(storage, f"out{seed}", SCHEMA, max_rows=1000)
    shuffle.write_to(writer)
    shards = writer.close()
    assert not storage.exists("spill")
    return [n for _, t in iter_shard_tables(storage, shards) for n in t.column("n").to_pylist()]


def test_permutation_seeded_and_mixed(storage):
    first = _shuffled(storage, 7)
    assert sorted(first) == list(range(5000))
    assert _shuffled(storage, 7) == first
    assert _shuffled(storage, 8) != first
    # rows from the last input table reach the first output rows
    assert max(first[:500]) >= 4000
    assert abs(np.corrcoef(first, np.arange(5000))[0, 1]) < 0.1
