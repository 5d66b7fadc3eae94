"""Short processes that read Parquet must exit cleanly (apache/arrow#34314 aborted ~1 in 3).

Reading through an fsspec Python file handle with pyarrow's pre-buffering left an I/O thread
behind that aborted the interpreter at exit with SIGABRT ("terminate called without an active
exception"). Each child below reads by path (local roots) or through a handle with
``pre_buffer=False`` (remote roots, forced here) and must exit 0 every time.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pytest

from llmstack_dagster.core.storage import Storage

RUNS = 24
CHILD = """
import sys
from llmstack_dagster.core.storage import Storage
storage = Storage(sys.argv[1])
if sys.argv[2] == "handle":
    storage.local_path = lambda rel: None  # the code path of s3://, gs://, ...
table = storage.read_table("t.parquet")
batches = sum(b.num_rows for b in storage.iter_batches("t.parquet", batch_size=5000))
assert table.num_rows == batches == 100_000
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["path", "handle"])
def test_short_reading_processes_exit_cleanly(tmp_path: Path, mode: str) -> None:
    storage = Storage(str(tmp_path))
    table = pa.table({"a": pa.array(range(100_000)), "b": pa.array(["x" * 50] * 100_000)})
    storage.write_table("t.parquet", table)

    def run(_: int) -> int:
        args = [sys.executable, "-c", CHILD, str(tmp_path), mode]
        return subprocess.run(args, capture_output=True, timeout=120).returncode

    with ThreadPoolExecutor(2) as pool:
        codes = list(pool.map(run, range(RUNS)))
    assert codes == [0] * RUNS
