"""``llmstack`` command line: ``llmstack demo`` runs the whole DAG on the embedded default."""

from __future__ import annotations

import argparse
import sys

from llmstack_dagster.lineage_cli import add_why_command
from llmstack_dagster.modal_cli import add_modal_commands
from llmstack_dagster.profiles import DEFAULT_PROFILE, PROFILE_ENV, PROFILES


def run_demo(profile: str | None = None) -> int:
    """``llmstack demo``: the whole DAG under ``profile`` (default: the active one)."""
    import os

    from llmstack_dagster.profiles import active_profile

    if profile:
        os.environ[PROFILE_ENV] = profile  # before the definitions read it
    from llmstack_dagster.demo_run import run_demo as run

    return run(active_profile())


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
    add_why_command(sub)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return run_demo(args.profile)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
