"""``llmstack`` command line: ``llmstack demo`` runs the whole DAG on the embedded default."""

from __future__ import annotations

import argparse
import sys
import time

from llmstack_dagster.modal_cli import add_modal_commands
from llmstack_dagster.profiles import DEFAULT_PROFILE, PROFILE_ENV, PROFILES


def plan_runs(asset_graph) -> list[tuple[list, bool]]:
    """Group the toposorted assets into runs: consecutive partitioned assets run together,
    once per partition, unless one needs other partitions of an asset in the same block;
    each unpartitioned asset runs alone. Returns (keys, partitioned)."""
    from dagster import IdentityPartitionMapping

    runs: list[tuple[list, bool]] = []
    block: list = []
    for key in asset_graph.toposorted_asset_keys:
        if asset_graph.get(key).partitions_def is not None:
            crosses = any(
                not isinstance(
                    asset_graph.get_partition_mapping(key, parent), IdentityPartitionMapping
                )
                for parent in asset_graph.get(key).parent_keys
                if parent in block
            )
            if crosses:
                runs.append((block, True))
                block = []
            block.append(key)
            continue
        if block:
            runs.append((block, True))
            block = []
        runs.append(([key], False))
    if block:
        runs.append((block, True))
    return runs


def run_demo(profile: str | None = None) -> int:
    """Materialize every asset for every partition, in dependency order, into DAGSTER_HOME,
    under ``profile`` (default: the active one; see :mod:`llmstack_dagster.profiles`)."""
    import os

    from llmstack_dagster.profiles import PROFILE_ENV, active_profile

    if profile:
        os.environ[PROFILE_ENV] = profile  # before the definitions read it
    profile = active_profile()

    from dagster import DagsterInstance, materialize

    from llmstack_dagster.assets.common import domain_partitions
    from llmstack_dagster.definitions import defs

    instance = DagsterInstance.get()
    graph = defs.resolve_asset_graph()
    assets_defs = list(graph.assets_defs)
    start = time.monotonic()
    for keys, partitioned in plan_runs(graph):
        names = ", ".join(k.to_user_string() for k in keys)
        partitions = domain_partitions.get_partition_keys() if partitioned else [None]
        for partition in partitions:
            label = f"{names} [{partition}]" if partition else names
            print(f"demo: materializing {label}", flush=True)
            result = materialize(
                assets_defs,
                selection=keys,
                partition_key=partition,
                instance=instance,
                tags={"llmstack/trigger": "demo", "llmstack/profile": profile},
            )
            if not result.success:
                print(f"demo: FAILED at {label}", file=sys.stderr)
                return 1
    print(f"demo: done in {time.monotonic() - start:.0f} s; open the UI with `make ui`")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llmstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the whole pipeline on the bundled corpus, locally")
    demo.add_argument(
        "--profile",
        default=None,
        choices=sorted(PROFILES),
        help=f"asset config profile (default: ${PROFILE_ENV}, else {DEFAULT_PROFILE})",
    )
    add_modal_commands(sub)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return run_demo(args.profile)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
