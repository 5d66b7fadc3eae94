"""Rows sorted by a key in [0, 1) with bounded memory (two passes through storage).

Rows are spilled to the range partition of their key; each partition is then sorted in memory
and written out in partition order. With roughly uniform keys, memory holds the spill buffers
plus about ``rows_per_partition`` rows.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from llmstack_dagster.core.curation.selection.external_shuffle import PartitionSpill
from llmstack_dagster.core.storage import ShardWriter, Storage

KEY_COLUMN = "_sort_key"


class KeySort(PartitionSpill):
    def __init__(
        self,
        storage: Storage,
        folder: str,
        schema: pa.Schema,
        expected_rows: int,
        rows_per_partition: int,
    ) -> None:
        keyed = schema.append(pa.field(KEY_COLUMN, pa.float64(), nullable=False))
        super().__init__(storage, folder, keyed, expected_rows, rows_per_partition)

    def add(self, table: pa.Table, keys: np.ndarray) -> None:
        """Spill ``table``'s rows, ``keys[i]`` being row i's key."""
        if table.num_rows == 0:
            return
        keyed = table.select(self.schema.names[:-1]).append_column(KEY_COLUMN, pa.array(keys))
        partitions = np.minimum(
            (keys * self.num_partitions).astype(np.int64), self.num_partitions - 1
        )
        self._scatter(keyed, partitions)

    def write_to(self, writer: ShardWriter) -> None:
        """Append every row to ``writer`` in key order (stable); removes the spill files."""
        for table in self._partitions():
            order = np.argsort(table.column(KEY_COLUMN).to_numpy(), kind="stable")
            writer.write_table(table.take(order).drop_columns([KEY_COLUMN]))
