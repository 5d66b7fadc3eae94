"""Shared pieces of the asset layer: the domain partitions and metadata helpers."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from dagster import (
    AssetExecutionContext,
    AutomationCondition,
    DagsterInstance,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    StaticPartitionsDefinition,
)
from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager

from llmstack_dagster.core.curation.demo import load_corpus
from llmstack_dagster.core.storage import ShardManifest, Storage, current_manifest
from llmstack_dagster.profiles import active_profile

CURATION_GROUP = "curation"
# Unpartitioned assets write one shared output: at most one run writes each at a time
# (deploy/dagster.yaml gives every pool a limit of 1).
GLOBAL_ASSETS_POOL = "llmstack_global_assets"
NIGHTLY_CRON_ENV = "LLMSTACK_NIGHTLY_CRON"
DEFAULT_NIGHTLY_CRON = "0 2 * * *"
# Nightly re-curation, declaratively (the nightly_recuration sensor evaluates both):
# - each cron tick observes every domain's source files (corpus_sources: a data version from
#   their sizes, mtimes and config);
# - a curation asset partition runs when it is missing, its code version changed, or the data
#   version of one of its parents changed, once no parent is missing or in progress. An
#   unpartitioned asset thus runs once, after the partitions it reads. A stage whose content
#   version is unchanged commits nothing and materializes nothing, so nothing below it runs.
NIGHTLY_OBSERVATION = AutomationCondition.on_cron(
    os.environ.get(NIGHTLY_CRON_ENV, "") or DEFAULT_NIGHTLY_CRON, cron_timezone="UTC"
)
RECURATE_ON_CHANGE = (
    (
        AutomationCondition.missing().newly_true()
        | AutomationCondition.code_version_changed()
        | AutomationCondition.any_deps_match(AutomationCondition.data_version_changed())
    ).since_last_handled()
    & ~AutomationCondition.any_deps_missing()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("recurate_on_change")
SHARED_DATA_ENV = "LLMSTACK_SHARED_DATA"
DEFAULT_SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TOKENIZER_REL = "tokenizer/tokenizer.json"  # where the tokenizer asset stores its file

# Partitions come from the configured corpus (LLMSTACK_CORPUS_CONFIG) or the demo's domains.
domain_partitions = StaticPartitionsDefinition(sorted(load_corpus().domains))


def shared_data_dir() -> Path:
    """The evaluation and sample data (``$LLMSTACK_SHARED_DATA``, else ``../shared/data``)."""
    path = Path(os.environ.get(SHARED_DATA_ENV, "") or DEFAULT_SHARED_DATA)
    if not path.is_dir():
        raise FileNotFoundError(f"evaluation data folder {path} is missing: set {SHARED_DATA_ENV}")
    return path


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


# Dagster 1.13's asset pages render a markdown metadata value in place only when it is shorter
# than 1000 characters (ui-core MetadataEntry.tsx: ``mdStr.length < 1000``); a longer one, such
# as a PNG data URI, sits behind "[Show Markdown]". So a chart shown in place is a short image
# link, and its URL must be one the webserver answers.
INLINE_MARKDOWN_LIMIT = 1000
CHART_LOG_KEY = ("llmstack", "charts")


def served_chart_url(instance: DagsterInstance, png: bytes) -> str | None:
    """Copy a PNG where the Dagster webserver serves files and return its URL path, or None.

    The only webserver route that serves a file is the captured-log download,
    ``/logs/<key...>/<extension>``, which answers for a :class:`LocalComputeLogManager` (the
    default) from its folder under ``$DAGSTER_HOME``; the chart is stored there under its
    content hash. A webserver started with ``--path-prefix`` would need the prefix in front.
    """
    manager = instance.compute_log_manager
    if not isinstance(manager, LocalComputeLogManager):
        return None
    key = [*CHART_LOG_KEY, hashlib.sha256(png).hexdigest()[:32]]
    path = Path(manager.get_captured_local_path(key, "png"))
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        partial.write_bytes(png)
        partial.replace(path)
    return "/logs/" + "/".join(key) + "/png"


def chart_metadata(
    instance: DagsterInstance, storage: Storage, path: str, title: str
) -> MetadataValue:
    """The stored PNG chart at ``path`` as markdown the asset page shows in place: an image
    served by the webserver and the chart's storage URL; where the webserver cannot serve it
    (another compute log manager), the PNG as a data URI behind "[Show Markdown]"."""
    png = storage.read_bytes(path)
    url = served_chart_url(instance, png)
    if url is None:
        return MetadataValue.md(png_markdown(png, title))
    image = f"![{title}]({url})"
    captioned = f"{image}\n\n`{storage.url(path)}`"
    return MetadataValue.md(captioned if len(captioned) < INLINE_MARKDOWN_LIMIT else image)


def resume_key(context: AssetExecutionContext) -> str:
    """The key a run and its retries and re-executions share (the root run's id): a retry
    resumes the per-shard work its failed attempt finished, and no other run does."""
    return context.run.root_run_id or context.run.run_id


def committed_version(storage: Storage, asset: str, partition: str | None) -> str | None:
    """The version an asset partition's pointer names now, or None before the first one."""
    manifest = current_manifest(storage, asset, partition)
    return manifest.version if manifest else None


def materialization(
    context: AssetExecutionContext,
    manifest: ShardManifest,
    previous: str | None,
    metadata: Callable[[], dict[str, Any]],
) -> MaterializeResult | None:
    """The materialization of a stage's output, its data version being its content version;
    None (and a log line) when the stage found its inputs, config and code unchanged and
    returned the version already committed, so nothing downstream is triggered."""
    if manifest.version == previous:
        where = f"{manifest.asset}" + (f"[{manifest.partition}]" if manifest.partition else "")
        context.log.info(f"{where}: unchanged (content version {manifest.content_version}), "
                         f"{manifest.version} stays; nothing new to materialize")  # fmt: skip
        return None
    return MaterializeResult(
        metadata=metadata(), data_version=DataVersion(str(manifest.content_version))
    )


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
