"""``llmstack demo``: every asset of the DAG, in dependency order, as named Dagster runs.

The terminal gets one line per run (its assets' counts and time), progress lines from long
stages (``logging`` under ``llmstack_dagster``, and the trainer's step lines with an ETA), any
warning, and at the end where each artifact is. Everything else, Dagster's DEBUG events
included, goes to a log file in ``$DAGSTER_HOME``; every run is in the UI as well.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    Definitions,
    IdentityPartitionMapping,
    InitLoggerContext,
    PartitionsDefinition,
    define_asset_job,
    logger,
)

from llmstack_dagster.core.storage import Storage, read_manifest
from llmstack_dagster.instance.run_coordinator import PROFILE_TAG

PROGRESS_LOGGER = "llmstack_dagster"
COUNT_KEYS = ("read", "written", "quarantined", "in", "kept", "dropped", "removed",
              "documents", "rows", "train_tokens", "val_tokens")  # fmt: skip


def plan_runs(asset_graph) -> list[tuple[list[AssetKey], PartitionsDefinition | None]]:
    """Group the toposorted assets into runs: consecutive assets with the same partitions run
    together, once per partition, unless one needs other partitions of an asset in the same
    block; each unpartitioned asset runs alone. Returns (keys, partitions or None)."""
    runs: list[tuple[list[AssetKey], PartitionsDefinition | None]] = []
    block: list[AssetKey] = []
    block_partitions: PartitionsDefinition | None = None
    for key in asset_graph.toposorted_asset_keys:
        if not asset_graph.get(key).is_materializable:  # observed sources, not built
            continue
        partitions = asset_graph.get(key).partitions_def
        if partitions is not None:
            crosses = partitions != block_partitions or any(
                not isinstance(
                    asset_graph.get_partition_mapping(key, parent), IdentityPartitionMapping
                )
                for parent in asset_graph.get(key).parent_keys
                if parent in block
            )
            if crosses and block:
                runs.append((block, block_partitions))
                block = []
            block.append(key)
            block_partitions = partitions
            continue
        if block:
            runs.append((block, block_partitions))
            block = []
        runs.append(([key], None))
    if block:
        runs.append((block, block_partitions))
    return runs


def job_name(keys: list[AssetKey]) -> str:
    """``demo_raw_documents`` or ``demo_raw_documents_to_document_fingerprints``."""
    first, last = keys[0].to_python_identifier(), keys[-1].to_python_identifier()
    return f"demo_{first}" if len(keys) == 1 else f"demo_{first}_to_{last}"


@logger(config_schema={"path": str}, description="every record, DEBUG included, to a file")
def file_logger(init_context: InitLoggerContext) -> logging.Logger:
    log = logging.Logger("llmstack_demo_file", level=logging.DEBUG)
    handler = logging.FileHandler(init_context.logger_config["path"])
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    return log


class _UserMessages(logging.Filter):
    """What a stage says (``context.log``, the trainer's lines), and any warning; not
    Dagster's own events (step started, output handled, ...)."""

    def filter(self, record: logging.LogRecord) -> bool:
        meta = getattr(record, "dagster_meta", {}) or {}
        return record.levelno >= logging.WARNING or meta.get("dagster_event") is None


@logger(description="what stages say, on the terminal")
def terminal_logger(init_context: InitLoggerContext) -> logging.Logger:
    log = logging.Logger("llmstack_demo_terminal", level=logging.INFO)
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(_UserMessages())
    handler.setFormatter(_StepFormatter())
    log.addHandler(handler)
    return log


class _StepFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        meta = getattr(record, "dagster_meta", {}) or {}
        step = meta.get("step_key") or "run"
        text = meta.get("orig_message") or record.getMessage()
        level = "" if record.levelno < logging.WARNING else f"{record.levelname}: "
        return f"         {step}: {level}{text}"


def _counts_line(instance: DagsterInstance, run_id: str) -> str:
    """The main counts of each asset a run materialized, on one line."""
    parts = []
    materialized = DagsterEventType.ASSET_MATERIALIZATION
    for record in instance.get_records_for_run(run_id, of_type=materialized).records:
        mat = record.event_log_entry.asset_materialization
        if mat is None:
            continue
        counts = mat.metadata.get("counts")
        values = counts.value if counts is not None else {}
        shown = ", ".join(f"{k} {values[k]:,}" for k in COUNT_KEYS if k in values)
        parts.append(f"{mat.asset_key.to_user_string()}" + (f" ({shown})" if shown else ""))
    return "; ".join(parts)


def _artifacts(instance: DagsterInstance, storage: Storage) -> list[tuple[str, Any]]:
    """Where the checkpoint, its HF export, the charts and the data versions ended up."""
    found: list[tuple[str, Any]] = []
    for asset, label in (("pretrained_checkpoint", ""), ("midtrained_checkpoint", "midtrained ")):
        event = instance.get_latest_materialization_event(AssetKey(asset))
        if event is None or event.asset_materialization is None:
            continue
        metadata = event.asset_materialization.metadata
        found += [(label + name, metadata[key].value) for name, key in
                  (("checkpoint", "checkpoint"), ("Hugging Face export", "hf_export"))
                  if key in metadata]  # fmt: skip
        found.append((label + "loss curve", storage.url(f"{asset}/loss_curve.png")))
    if storage.exists("midtrained_checkpoint/forgetting.png"):
        found.append(("forgetting chart", storage.url("midtrained_checkpoint/forgetting.png")))
    mixture = read_manifest(storage, "sampled_mixture", None)
    found.append(("mixture composition chart", storage.url(mixture.extra["chart_path"])))
    found.append(("mixture plan", storage.url(mixture.extra["plan_path"])))
    histograms = storage.url("quality_scored/<domain>/<version>/perplexity_histogram.png")
    found.append(("perplexity histograms", histograms))
    return found


def quiet_libraries() -> None:
    """No download bars or preview warnings of libraries in the terminal."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", message=".*is currently in preview.*")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def run_demo(profile: str) -> int:
    """Materialize every asset for every partition under ``profile`` into ``$DAGSTER_HOME``."""
    from llmstack_dagster.assets.evaluation import REPORT_MD
    from llmstack_dagster.definitions import defs
    from llmstack_dagster.resources.storage import StorageResource

    quiet_libraries()

    instance = DagsterInstance.get()
    home = Path(instance.root_directory)
    log_path = home / f"demo-{datetime.now(UTC):%Y%m%dT%H%M%S}.log"
    if PROGRESS_LOGGER not in instance.managed_python_loggers:  # else the loggers get them
        progress = logging.getLogger(PROGRESS_LOGGER)
        progress.setLevel(logging.INFO)
        progress.addHandler(logging.StreamHandler(sys.stdout))
        progress.handlers[-1].setFormatter(logging.Formatter("         %(message)s"))

    graph = defs.resolve_asset_graph()
    runs = plan_runs(graph)
    jobs = [define_asset_job(job_name(keys), selection=keys) for keys, _ in runs]
    demo_defs = Definitions.merge(
        defs, Definitions(jobs=jobs, loggers={"file": file_logger, "terminal": terminal_logger})
    )
    run_config = {"loggers": {"file": {"config": {"path": str(log_path)}}, "terminal": {}}}
    total = sum(len(p.get_partition_keys()) if p else 1 for _, p in runs)
    storage = StorageResource().get()
    print(f"demo: profile {profile}, {total} runs; storage {storage.root}; log {log_path}",
          flush=True)  # fmt: skip
    started, done = time.monotonic(), 0
    for (_, partitions), job in zip(runs, jobs, strict=True):
        job_def = demo_defs.resolve_job_def(job.name)
        for partition in partitions.get_partition_keys() if partitions else [None]:
            done += 1
            label = job.name.removeprefix("demo_") + (f" [{partition}]" if partition else "")
            print(f"[{done:2d}/{total}] {label}", flush=True)
            run_started = time.monotonic()
            result = job_def.execute_in_process(
                instance=instance,
                partition_key=partition,
                run_config=run_config,
                tags={"llmstack/trigger": "demo", PROFILE_TAG: profile},
                raise_on_error=False,
            )
            seconds = time.monotonic() - run_started
            if not result.success:
                print(f"demo: FAILED at {label} after {seconds:.1f} s; see {log_path} and "
                      "the run in the UI (make ui)", file=sys.stderr)  # fmt: skip
                return 1
            print(f"         {_counts_line(instance, result.run_id)} [{seconds:.1f} s]",
                  flush=True)  # fmt: skip
    print(f"demo: done in {time.monotonic() - started:.0f} s")
    for name, value in _artifacts(instance, storage):
        print(f"  {name}: {value}")
    print(f"  log: {log_path}\n  runs and charts: make ui, then http://127.0.0.1:3000")
    print(f"report card: {storage.url(REPORT_MD)}")
    return 0
