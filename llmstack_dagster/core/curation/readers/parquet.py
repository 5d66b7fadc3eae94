"""Parquet files, row group by row group: a group that fails to decode is one quarantine row."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from llmstack_dagster.core.curation.readers.base import BadFile, RawRecord
from llmstack_dagster.core.curation.readers.files import (
    check_local,
    expand_paths,
    is_local,
    local_path,
    open_binary,
    read_files,
)
from llmstack_dagster.core.curation.sources import ParquetSource


def _parquet_error(url: str, err: Exception) -> BadFile:
    if isinstance(err, OSError) and err.errno is not None:
        return BadFile(url, "unreadable_file", f"cannot open: {err}")
    return BadFile(url, "corrupt_parquet", f"{type(err).__name__}: {err}")


@contextmanager
def _open_parquet(url: str) -> Iterator[pq.ParquetFile]:
    """Local files by path (Arrow's own reader); others through fsspec without pre-buffering,
    whose background reads through a Python file abort short processes at exit
    (apache/arrow#34314)."""
    fs, path = url_to_fs(url)
    with ExitStack() as stack:
        try:
            if is_local(fs):
                local = local_path(fs, path)
                check_local(local, url)
                parquet = pq.ParquetFile(local)
            else:
                handle = stack.enter_context(open_binary(fs, path, url))
                parquet = pq.ParquetFile(handle, pre_buffer=False)
        except (OSError, pa.ArrowException) as err:
            raise _parquet_error(url, err) from err
        stack.callback(parquet.close)
        yield parquet


def _row_group(parquet: pq.ParquetFile, url: str, group: int, first: int) -> Iterator[RawRecord]:
    """One row group's rows; a group that fails to decode is one quarantine row."""
    done = 0
    try:
        for batch in parquet.iter_batches(batch_size=4096, row_groups=[group]):
            for record in batch.to_pylist():
                yield RawRecord(url, f"row:{first + done}", record=record)
                done += 1
    except (OSError, pa.ArrowException) as err:
        rows = parquet.metadata.row_group(group).num_rows
        yield RawRecord(
            url,
            f"row:{first + done}",
            error="corrupt_parquet",
            detail=(
                f"{url}: row group {group} (rows {first}..{first + rows - 1}) fails after "
                f"{done} rows, {rows - done} rows lost: {type(err).__name__}: {err}"
            ),
        )


def parquet_file(url: str) -> Iterator[RawRecord]:
    with _open_parquet(url) as parquet:
        first = 0
        for group in range(parquet.num_row_groups):
            yield from _row_group(parquet, url, group, first)
            first += parquet.metadata.row_group(group).num_rows


def read_parquet(source: ParquetSource) -> Iterator[RawRecord]:
    yield from read_files(source, expand_paths(source, source.paths), parquet_file)
