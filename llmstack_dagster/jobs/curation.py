"""The curation job and its nightly schedule (one run per domain partition)."""

from __future__ import annotations

import os

from dagster import (
    AssetSelection,
    RunRequest,
    ScheduleEvaluationContext,
    define_asset_job,
    schedule,
)

from llmstack_dagster.assets.common import CURATION_GROUP, domain_partitions

NIGHTLY_CRON_ENV = "LLMSTACK_NIGHTLY_CRON"
DEFAULT_NIGHTLY_CRON = "0 2 * * *"

curation_job = define_asset_job(
    "curation_job",
    selection=AssetSelection.groups(CURATION_GROUP),
    description="Re-curate one domain partition: every curation asset of that domain.",
)


@schedule(
    job=curation_job,
    cron_schedule=os.environ.get(NIGHTLY_CRON_ENV, DEFAULT_NIGHTLY_CRON),
    execution_timezone="UTC",
    description="Nightly re-curation: one run per domain partition (02:00 UTC by default).",
)
def nightly_recuration(context: ScheduleEvaluationContext) -> list[RunRequest]:
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return [
        RunRequest(
            run_key=f"{domain}-{day}", partition_key=domain, tags={"llmstack/trigger": "nightly"}
        )
        for domain in domain_partitions.get_partition_keys()
    ]
