"""Reordering more rows than fit in memory, in two passes through storage.

:class:`PartitionSpill` scatters rows to spill partitions and reads them back one partition
at a time. :class:`ExternalShuffle` picks a random partition per row and permutes each
partition in memory: a uniform partition choice plus a uniform permutation inside each
partition gives a uniform permutation overall. Memory: the spill buffers plus one partition
(about ``rows_per_partition`` rows).
"""

from __future__ import annotations

import math
import posixpath
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from llmstack_dagster.core.storage import ShardWriter, Storage

SPILL_ROWS = 2048
SPILL_BYTES = 8 * 1024 * 1024


class PartitionSpill:
    """Rows spilled to ``num_partitions`` folders under ``folder``, read back in order."""

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
        self.schema = schema
        self.num_partitions = max(1, math.ceil(expected_rows / rows_per_partition))
        self._spills: dict[int, ShardWriter] = {}
        storage.rm(folder)

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

    def _scatter(self, table: pa.Table, partitions: np.ndarray) -> None:
        """Append row i of ``table`` to partition ``partitions[i]`` (order kept within one)."""
        order = np.argsort(partitions, kind="stable")
        values, starts = np.unique(partitions[order], return_index=True)
        stops = np.append(starts[1:], len(order))
        for partition, start, stop in zip(values, starts, stops, strict=True):
            self._spill(int(partition)).write_table(table.take(order[start:stop]))

    def _partitions(self) -> Iterator[pa.Table]:
        """Each partition's rows in partition order; removes the spill files at the end."""
        for partition in sorted(self._spills):
            shards = self._spills[partition].close()
            yield pa.concat_tables(self.storage.read_table(s.path) for s in shards)
        self.storage.rm(self.folder)


class ExternalShuffle(PartitionSpill):
    def __init__(
        self,
        storage: Storage,
        folder: str,
        schema: pa.Schema,
        expected_rows: int,
        rows_per_partition: int,
        rng: np.random.Generator,
    ) -> None:
        super().__init__(storage, folder, schema, expected_rows, rows_per_partition)
        self.rng = rng

    def add(self, table: pa.Table) -> None:
        """Scatter ``table``'s rows to random partitions."""
        if table.num_rows:
            self._scatter(table, self.rng.integers(self.num_partitions, size=table.num_rows))

    def write_to(self, writer: ShardWriter) -> None:
        """Permute each partition and append it to ``writer``; removes the spill files."""
        for table in self._partitions():
            writer.write_table(table.take(self.rng.permutation(table.num_rows)))
