"""The nightly re-curation (declarative automation) and single-partition backfills."""

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    DagsterInstance,
    evaluate_automation_conditions,
)

from llmstack_dagster.assets.common import CURATION_GROUP, GLOBAL_ASSETS_POOL, domain_partitions
from llmstack_dagster.definitions import defs
from llmstack_dagster.jobs.curation import nightly_recuration

REPO = Path(__file__).resolve().parents[2]


class Nightly:
    """The curation assets' automation conditions evaluated minute by minute on an ephemeral
    instance. What is requested is reported back as done: sources as observations of their
    current data version, assets as materializations, except those listed as ``unchanged``
    (a stage whose content version did not change commits and materializes nothing)."""

    def __init__(self, instance: DagsterInstance) -> None:
        self.instance = instance
        self.cursor = None
        self.runs = 0  # each materialization gets a new data version
        self.sources = dict.fromkeys(domain_partitions.get_partition_keys(), "v1")

    def night(self, day: int, unchanged: set[tuple[str, str | None]] = frozenset()):
        requested: list[tuple[str, str | None]] = []
        start = datetime(2026, 11, day, 1, 58, tzinfo=UTC)
        for minute in range(15):
            result = evaluate_automation_conditions(
                defs=defs, instance=self.instance, cursor=self.cursor,
                evaluation_time=start + timedelta(minutes=minute),
            )  # fmt: skip
            self.cursor = result.cursor
            for item in result.results:
                if item.true_subset.size:
                    requested += self._report(item.key, item.true_subset, unchanged)
        return requested

    def _report(self, key: AssetKey, subset, unchanged) -> list[tuple[str, str | None]]:
        name = key.to_user_string()
        partitioned = defs.resolve_asset_graph().get(key).partitions_def is not None
        keys = sorted(subset.expensively_compute_partition_keys()) if partitioned else [None]
        for partition in keys:
            if name == "corpus_sources":
                tags = {"dagster/data_version": self.sources[partition]}
                event = AssetObservation(key, partition=partition, tags=tags)
            elif (name, partition) in unchanged:
                continue
            else:
                self.runs += 1
                tags = {"dagster/data_version": f"{name}-{partition}-{self.runs}"}
                event = AssetMaterialization(key, partition=partition, tags=tags)
            self.instance.report_runless_asset_event(event)
        return [(name, p) for p in keys]


def _curation_keys() -> list[str]:
    graph = defs.resolve_asset_graph()
    return sorted(k.to_user_string() for k in graph.get_all_asset_keys()
                  if graph.get(k).group_name == CURATION_GROUP)  # fmt: skip


def test_one_nightly_tick_covers_every_partition_once_and_each_global_asset_once() -> None:
    with DagsterInstance.ephemeral() as instance:
        requested = Nightly(instance).night(24)
    domains = sorted(domain_partitions.get_partition_keys())
    per_asset: dict[str, list[str | None]] = {}
    for name, partition in requested:
        per_asset.setdefault(name, []).append(partition)
    assert sorted(per_asset) == _curation_keys()
    for name, keys in per_asset.items():
        partitioned = defs.resolve_asset_graph().get(AssetKey(name)).partitions_def is not None
        assert sorted(keys, key=str) == (domains if partitioned else [None]), name
    # global assets come after every partition they read
    order = [name for name, _ in requested]
    assert order.index("duplicate_clusters") > max(
        i for i, name in enumerate(order) if name == "document_fingerprints"
    )
    assert order[-1] == "sampled_mixture"


def test_a_night_with_nothing_changed_materializes_nothing() -> None:
    with DagsterInstance.ephemeral() as instance:
        nightly = Nightly(instance)
        nightly.night(24)
        second = nightly.night(25)
    assert {name for name, _ in second} == {"corpus_sources"}  # observed, nothing else


def test_a_changed_source_recurates_its_domain_and_the_global_assets_below_it() -> None:
    others = set(domain_partitions.get_partition_keys()) - {"code"}
    with DagsterInstance.ephemeral() as instance:
        nightly = Nightly(instance)
        nightly.night(24)
        nightly.sources["code"] = "v2"
        # the other domains' dedup finds its removal rows unchanged, and the reference LM its
        # reference domains unchanged: they run, commit nothing and materialize nothing
        unchanged = {("deduplicated_documents", d) for d in others} | {("reference_lm", None)}
        third = nightly.night(25, unchanged=unchanged)
    work = sorted({(n, p) for n, p in third if n != "corpus_sources"}, key=str)
    assert work == sorted(
        [("raw_documents", "code"), ("document_fingerprints", "code"),
         ("duplicate_clusters", None), ("reference_lm", None), ("quality_scored", "code"),
         ("dsir_selected", "code"), ("sampled_mixture", None)]
        + [("deduplicated_documents", d) for d in [*others, "code"]],
        key=str,
    )  # fmt: skip


def test_nightly_sensor_runs_under_the_active_profile_and_globals_share_a_pool() -> None:
    assert nightly_recuration.run_tags["llmstack/profile"] == "demo"
    for key in defs.resolve_asset_graph().get_all_asset_keys():
        assets_def = defs.resolve_assets_def(key)
        if assets_def.partitions_def is None:
            assert assets_def.op.pool == GLOBAL_ASSETS_POOL, key


@pytest.mark.slow
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
