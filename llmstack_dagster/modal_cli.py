"""``llmstack modal run|ls|get|clean``: train on Modal, browse and fetch volume artifacts."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from llmstack_dagster.core.dispatch.modal_app import PRESETS


def add_modal_commands(sub: argparse._SubParsersAction) -> None:
    """Register the ``modal`` command group on the top-level ``llmstack`` parser."""
    group = sub.add_parser("modal", help="train on Modal GPUs and manage the Modal volume")
    group.add_argument(
        "--volume", default=os.environ.get("LLMSTACK_MODAL_VOLUME", "llmstack-train")
    )
    cmds = group.add_subparsers(dest="modal_command", required=True)
    run = cmds.add_parser("run", help="materialize a training asset with the Modal backend")
    run.add_argument("--select", default="pretrained_checkpoint", help="asset key to materialize")
    run.add_argument("--partition", default=None)
    run.add_argument("--preset", choices=sorted(PRESETS), default=None)
    run.add_argument("--gpu", default=None, help='"T4", "A100-80GB", "H100:8", ...')
    ls = cmds.add_parser("ls", help="list files in the volume")
    ls.add_argument("path", nargs="?", default="/")
    ls.add_argument("-r", "--recursive", action="store_true")
    get = cmds.add_parser("get", help="download a file or folder from the volume")
    get.add_argument("remote")
    get.add_argument("local", type=Path)
    clean = cmds.add_parser("clean", help="delete paths (runs/..., data/...) from the volume")
    clean.add_argument("paths", nargs="+")
    clean.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    group.set_defaults(handler=run_modal_command)


def _volume(name: str):
    import modal

    return modal.Volume.from_name(name, create_if_missing=True)


def _run(args: argparse.Namespace) -> int:
    from dagster import AssetKey, DagsterInstance, materialize

    os.environ["LLMSTACK_TRAINING_BACKEND"] = "modal"
    os.environ["LLMSTACK_MODAL_VOLUME"] = args.volume
    for name, value in (("PRESET", args.preset), ("GPU", args.gpu)):
        if value:
            os.environ[f"LLMSTACK_MODAL_{name}"] = value
    from llmstack_dagster.definitions import defs

    graph = defs.resolve_asset_graph()
    result = materialize(
        list(graph.assets_defs),
        selection=[AssetKey.from_user_string(args.select)],
        partition_key=args.partition,
        instance=DagsterInstance.get(),
        tags={"llmstack/trigger": "modal-cli", "llmstack/gpu": "true"},
    )
    return 0 if result.success else 1


def run_modal_command(args: argparse.Namespace) -> int:
    from llmstack_dagster.core.dispatch.download import fetch

    if args.modal_command == "run":
        return _run(args)
    volume = _volume(args.volume)
    if args.modal_command == "ls":
        for entry in volume.listdir(args.path, recursive=args.recursive):
            kind = "d" if entry.type.name == "DIRECTORY" else "-"
            print(f"{kind} {entry.size:>14,} {entry.path}")
        return 0
    if args.modal_command == "get":
        files = fetch(volume, args.remote, args.local)
        print(f"downloaded {len(files)} files into {args.local}")
        return 0 if files else 1
    if not args.yes:
        answer = input(f"delete {', '.join(args.paths)} from volume {args.volume}? [y/N] ")
        if answer.strip().lower() != "y":
            return 1
    for path in args.paths:
        volume.remove_file(path, recursive=True)
        print(f"removed {path}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="llmstack")
    add_modal_commands(parser.add_subparsers(dest="command", required=True))
    parsed = parser.parse_args()
    sys.exit(parsed.handler(parsed))
