"""``memory://`` roots: end to end in one process, a clear error across step processes."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from dagster import AssetSelection, materialize

from llmstack_dagster.assets.dedup import document_fingerprints
from llmstack_dagster.assets.raw_documents import raw_documents
from llmstack_dagster.core.storage import Storage, read_manifest
from llmstack_dagster.resources.corpus import CorpusResource
from llmstack_dagster.resources.storage import StorageResource

REPO = Path(__file__).resolve().parents[2]


def test_memory_root_end_to_end_in_one_process() -> None:
    root = f"memory://llmstack-{uuid.uuid4().hex}"
    resources = {"storage": StorageResource(root=root), "corpus": CorpusResource(config_path="")}
    result = materialize(
        [raw_documents, document_fingerprints],
        selection=AssetSelection.assets(raw_documents, document_fingerprints),
        partition_key="books",
        resources=resources,
    )
    assert result.success
    store = Storage(root)
    raw = read_manifest(store, "raw_documents", "books")
    fingerprints = read_manifest(store, "document_fingerprints", "books")
    assert raw.rows > 0 and fingerprints.counts["in"] == raw.rows
    assert all(c.passed for c in result.get_asset_check_evaluations())


@pytest.mark.slow
def test_memory_root_with_the_multiprocess_executor_is_a_clear_error(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home), "LLMSTACK_STORAGE_ROOT": "memory://shared"}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m",
         "llmstack_dagster.definitions", "--select", "raw_documents", "--partition", "books"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "storage root 'memory://shared/demo' is process-local" in output
    assert "in_process" in output
    # the step failed with that message; its STEP_FAILURE log line is not asserted: under load
    # the CLI has been seen to exit before printing it (the message and exit code are enough)
    assert "STEP_SUCCESS" not in output
