"""Shared pieces of the asset layer: the domain partitions and metadata helpers."""

from __future__ import annotations

import base64
import os
from typing import Any

import yaml
from dagster import AutomationCondition, MetadataValue, StaticPartitionsDefinition

from llmstack_dagster.core.curation.demo import load_corpus
from llmstack_dagster.core.storage import ShardManifest, Storage
from llmstack_dagster.profiles import active_profile

CURATION_GROUP = "curation"
# Unpartitioned assets write one shared output: at most one run writes each at a time
# (dagster.yaml gives every pool a limit of 1).
GLOBAL_ASSETS_POOL = "llmstack_global_assets"
NIGHTLY_CRON_ENV = "LLMSTACK_NIGHTLY_CRON"
DEFAULT_NIGHTLY_CRON = "0 2 * * *"
# Nightly re-curation, declaratively: after each cron tick, every domain partition of a
# curation asset runs once its parents have updated, and each unpartitioned asset runs once,
# after every partition it reads (the nightly_recuration sensor evaluates it).
NIGHTLY_RECURATION = AutomationCondition.on_cron(
    os.environ.get(NIGHTLY_CRON_ENV, "") or DEFAULT_NIGHTLY_CRON, cron_timezone="UTC"
)
TOKENIZER_REL = "tokenizer/tokenizer.json"  # where the tokenizer asset stores its file

# Partitions come from the configured corpus (LLMSTACK_CORPUS_CONFIG) or the demo's domains.
domain_partitions = StaticPartitionsDefinition(sorted(load_corpus().domains))


def markdown_table(rows: list[dict[str, Any]], max_cell: int = 120) -> str:
    """A markdown table of dict rows (cells are single-line and truncated)."""
    if not rows:
        return "_no rows_"
    headers = list(rows[0])

    def cell(value: Any) -> str:
        text = str(value).replace("\n", " ").replace("|", "\\|")
        return text if len(text) <= max_cell else text[: max_cell - 1] + "…"

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(r.get(h)) for h in headers) + " |" for r in rows]
    return "\n".join(lines)


def yaml_overrides(path: str) -> dict[str, Any]:
    """The mapping in a YAML config file, or {} when no file is given."""
    if not path:
        return {}
    with open(path) as handle:
        return yaml.safe_load(handle) or {}


def png_markdown(png: bytes, title: str) -> str:
    """A PNG inlined as a data URI, so the UI shows it without access to the storage root."""
    return f"![{title}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def shard_metadata(storage: Storage, manifest: ShardManifest) -> dict[str, Any]:
    """Row count, bytes and shard paths of a manifest, as Dagster metadata."""
    return {
        "rows": MetadataValue.int(manifest.rows),
        "bytes": MetadataValue.int(manifest.bytes),
        "dropped": MetadataValue.int(manifest.dropped),
        "shards": MetadataValue.json([storage.url(s.path) for s in manifest.shards]),
        "counts": MetadataValue.json(manifest.counts),
        **version_metadata(manifest),
    }


def version_metadata(manifest: ShardManifest) -> dict[str, Any]:
    """The committed version folder and the content version (inputs + config + code)."""
    return {
        "profile": MetadataValue.text(active_profile()),
        "version": MetadataValue.text(str(manifest.version)),
        "content_version": MetadataValue.text(str(manifest.content_version)),
    }
