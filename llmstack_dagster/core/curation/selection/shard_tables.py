"""Reading document shards that may carry extra columns (quality scores, DSIR weights)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from llmstack_dagster.core.schema import DOCUMENT_SCHEMA
from llmstack_dagster.core.storage import ShardInfo, Storage


def shard_schema(storage: Storage, shard: ShardInfo) -> pa.Schema:
    """A shard's schema, read from the Parquet footer only."""
    with storage.fs.open(storage.url(shard.path), "rb") as handle:
        return pq.read_schema(handle)


def unified_schema(storage: Storage, shards: Iterable[ShardInfo], extra: pa.Schema) -> pa.Schema:
    """DOCUMENT_SCHEMA, then every other column seen in ``shards`` (nullable), then ``extra``.

    Columns named in ``extra`` replace same-named input columns.
    """
    fields = {f.name: f for f in DOCUMENT_SCHEMA}
    for shard in shards:
        for field in shard_schema(storage, shard):
            if field.name not in fields and field.name not in extra.names:
                fields[field.name] = field.with_nullable(True)
    for field in extra:
        fields[field.name] = field
    return pa.schema(list(fields.values()))


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns: missing ones become nulls."""
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def iter_column_batches(
    storage: Storage, shards: Iterable[ShardInfo], column: str, batch_size: int
) -> Iterator[list[str]]:
    """One column of every shard, in order, as Python lists of at most ``batch_size`` values."""
    for shard in shards:
        for batch in storage.iter_batches(shard.path, columns=[column], batch_size=batch_size):
            yield batch.column(0).to_pylist()
