"""Rows sorted by a key in [0, 1) with bounded memory (two passes through storage).

Rows are spilled to the range partition of their key; each partition is then sorted in memory
and written out in partition order. With roughly uniform keys, memory holds the spill buffers
plus about ``rows_per_partition`` rows.
"""

from __future__ import annotations

import math
import posixpath

import numpy as np
import pyarrow as pa

from llmstack_dagster.core.storage import ShardWriter, Storage

KEY_COLUMN = "_sort_key"
SPILL_ROWS = 2048
SPILL_BYTES = 8 * 1024 * 1024


class KeySort:
    def __init__(
        self,
        storage: Storage,
        folder: str,
        schema: pa.Schema,
        expected_rows: int,
        rows_per_partition: int,
    ) -> None:
        self.storage = storage
        self.folder = folder
        self.schema = schema.append(pa.field(KEY_COLUMN, pa.float64(), nullable=False))
        self.num_partitions = max(1, math.ceil(expected_rows / rows_per_partition))
        self._spills: dict[int, ShardWriter] = {}
        storage.rm(folder)

    def add(self, table: pa.Table, keys: np.ndarray) -> None:
        """Spill ``table``'s rows, ``keys[i]`` being row i's key."""
        if table.num_rows == 0:
            return
        keyed = table.select(self.schema.names[:-1]).append_column(KEY_COLUMN, pa.array(keys))
        partitions = np.minimum(
            (keys * self.num_partitions).astype(np.int64), self.num_partitions - 1
        )
        order = np.argsort(partitions, kind="stable")
        values, starts = np.unique(partitions[order], return_index=True)
        stops = np.append(starts[1:], len(order))
        for partition, start, stop in zip(values, starts, stops, strict=True):
            self._spill(int(partition)).write_table(keyed.take(order[start:stop]))

    def _spill(self, partition: int) -> ShardWriter:
        if partition not in self._spills:
            self._spills[partition] = ShardWriter(
                self.storage,
                posixpath.join(self.folder, f"p{partition:06d}"),
                self.schema,
                max_rows=SPILL_ROWS,
                max_bytes=SPILL_BYTES,
            )
        return self._spills[partition]

    def write_to(self, writer: ShardWriter) -> None:
        """Append every row to ``writer`` in key order (stable); removes the spill files."""
        for partition in sorted(self._spills):
            shards = self._spills[partition].close()
            table = pa.concat_tables(self.storage.read_table(s.path) for s in shards)
            order = np.argsort(table.column(KEY_COLUMN).to_numpy(), kind="stable")
            writer.write_table(table.take(order).drop_columns([KEY_COLUMN]))
        self.storage.rm(self.folder)
