"""The nightly schedule and single-partition backfills."""

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from dagster import DagsterInstance, build_schedule_context

from llmstack_dagster.assets.common import domain_partitions
from llmstack_dagster.definitions import defs
from llmstack_dagster.jobs.curation import nightly_recuration

REPO = Path(__file__).resolve().parents[2]


def test_schedule_tick_requests_one_run_per_domain() -> None:
    when = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    with DagsterInstance.ephemeral() as instance:
        context = build_schedule_context(
            instance=instance,
            scheduled_execution_time=when,
            repository_def=defs.get_repository_def(),
        )
        requests = nightly_recuration.evaluate_tick(context).run_requests
    assert sorted(r.partition_key for r in requests) == sorted(
        domain_partitions.get_partition_keys()
    )
    assert len({r.run_key for r in requests}) == len(requests)
    assert all(r.run_key.endswith("2026-11-24") for r in requests)
    assert nightly_recuration.execution_timezone == "UTC"


def test_cli_backfill_of_one_partition_touches_only_it(tmp_path: Path) -> None:
    home, root = tmp_path / "home", tmp_path / "store"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home), "LLMSTACK_STORAGE_ROOT": str(root)}
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "asset",
            "materialize",
            "-m",
            "llmstack_dagster.definitions",
            "--select",
            "raw_documents",
            "--partition",
            "news",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in (root / "raw_documents").iterdir()) == ["news"]
    with DagsterInstance.from_config(str(home)) as instance:
        from dagster import AssetKey

        partitions = instance.get_materialized_partitions(AssetKey("raw_documents"))
    assert partitions == {"news"}
