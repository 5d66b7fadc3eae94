"""``llmstack why DOC_ID``: one document's decision at every stage, its mixture copies and
the checkpoints trained on it (:mod:`llmstack_dagster.core.lineage`)."""

from __future__ import annotations

import argparse
import sys

from llmstack_dagster.core.lineage import format_trace, trace_document
from llmstack_dagster.core.storage import Storage


def add_why_command(sub: argparse._SubParsersAction) -> None:
    """Register ``why`` on the top-level ``llmstack`` parser."""
    why = sub.add_parser("why", help="trace one document through every stage to the checkpoints")
    why.add_argument("doc_id", metavar="DOC_ID", help="document id, <source>/<native id>")
    why.add_argument(
        "--root",
        default=None,
        help="storage root (fsspec URL); default $LLMSTACK_STORAGE_ROOT or ./data",
    )
    why.add_argument("--domain", default=None, help="search only this domain partition")
    why.add_argument("--json", action="store_true", help="print the trace as JSON")
    why.set_defaults(handler=run_why)


def _root(args: argparse.Namespace) -> str:
    if args.root:
        return args.root
    from llmstack_dagster.resources.storage import default_storage_root

    return default_storage_root()


def run_why(args: argparse.Namespace) -> int:
    """Print the trace; 0 when some stage holds the document, 1 when none does."""
    storage = Storage(_root(args))
    trace = trace_document(storage, args.doc_id, domain=args.domain)
    if not trace.found:
        searched = [s.partition or "" for s in trace.stages]
        where = ", ".join(searched) if searched else "none committed"
        print(
            f"{trace.doc_id}: in no stage under {storage.root} "
            f"(raw_documents partitions searched: {where})",
            file=sys.stderr,
        )
        return 1
    print(trace.model_dump_json(indent=2) if args.json else format_trace(trace))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="llmstack")
    add_why_command(parser.add_subparsers(dest="command", required=True))
    parsed = parser.parse_args()
    sys.exit(parsed.handler(parsed))
