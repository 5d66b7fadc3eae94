"""The nightly re-curation (declarative automation) and single-partition backfills."""

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dagster import AssetMaterialization, DagsterInstance, evaluate_automation_conditions

from llmstack_dagster.assets.common import CURATION_GROUP, GLOBAL_ASSETS_POOL, domain_partitions
from llmstack_dagster.definitions import defs
from llmstack_dagster.jobs.curation import nightly_recuration

REPO = Path(__file__).resolve().parents[2]


def _nightly_ticks(start: datetime, minutes: int) -> list[tuple[str, list[str | None]]]:
    """Evaluate the curation assets' automation conditions minute by minute from ``start``,
    recording what each evaluation requests and then reporting it materialized."""
    requested: list[tuple[str, list[str | None]]] = []
    cursor = None
    with DagsterInstance.ephemeral() as instance:
        for minute in range(minutes):
            result = evaluate_automation_conditions(
                defs=defs, instance=instance, cursor=cursor,
                evaluation_time=start + timedelta(minutes=minute),
            )  # fmt: skip
            cursor = result.cursor
            for item in result.results:
                if not item.true_subset.size:
                    continue
                partitioned = defs.resolve_assets_def(item.key).partitions_def is not None
                keys = (
                    sorted(item.true_subset.expensively_compute_partition_keys())
                    if partitioned
                    else [None]
                )
                requested.append((item.key.to_user_string(), keys))
                for key in keys:
                    event = AssetMaterialization(item.key, partition=key)
                    instance.report_runless_asset_event(event)
    return requested


def test_one_nightly_tick_covers_every_partition_once_and_each_global_asset_once() -> None:
    requested = _nightly_ticks(datetime(2026, 11, 24, 1, 58, tzinfo=UTC), 15)
    domains = sorted(domain_partitions.get_partition_keys())
    curation = [k for k in defs.resolve_asset_graph().get_all_asset_keys()
                if defs.resolve_assets_def(k).group_names_by_key[k] == CURATION_GROUP]  # fmt: skip
    per_asset: dict[str, list[str | None]] = {}
    for name, keys in requested:
        per_asset.setdefault(name, []).extend(keys)
    assert sorted(per_asset) == sorted(k.to_user_string() for k in curation)
    for name, keys in per_asset.items():
        partitioned = defs.resolve_assets_def(name).partitions_def is not None
        assert sorted(keys, key=str) == (domains if partitioned else [None]), name
    # global assets come after every partition they read
    order = [name for name, _ in requested]
    assert order.index("duplicate_clusters") > order.index("document_fingerprints")
    assert order.index("sampled_mixture") == len(order) - 1


def test_nightly_sensor_runs_under_the_active_profile_and_globals_share_a_pool() -> None:
    assert nightly_recuration.run_tags["llmstack/profile"] == "demo"
    for key in defs.resolve_asset_graph().get_all_asset_keys():
        assets_def = defs.resolve_assets_def(key)
        if assets_def.partitions_def is None:
            assert assets_def.op.pool == GLOBAL_ASSETS_POOL, key


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
    # the default profile (demo) writes under its own folder of the storage root
    assert sorted(p.name for p in (root / "demo" / "raw_documents").iterdir()) == ["news"]
    with DagsterInstance.from_config(str(home)) as instance:
        from dagster import AssetKey

        partitions = instance.get_materialized_partitions(AssetKey("raw_documents"))
    assert partitions == {"news"}
