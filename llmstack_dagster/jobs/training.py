"""The training job and the retraining sensor (off by default).

Pretraining data goes stale: the seed plans regular retraining cycles, since a model whose
data is a year older than its evaluation data loses about 0.4 points per year (Longpre et al.
2023, see references/temporal-alignment.md). The sensor launches ``training_job`` when the
sampled mixture has a new content version, or, with ``$LLMSTACK_RETRAIN_EVERY_DAYS`` set, when
that many days have passed since the last launch. The checkpoint records the date range of
the documents it was trained on (``date_min``/``date_max`` in its ``meta.json``).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

from dagster import (
    AssetKey,
    AssetSelection,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    define_asset_job,
    sensor,
)

from llmstack_dagster.assets.pretraining import TRAINING_GROUP
from llmstack_dagster.instance.run_coordinator import PROFILE_TAG
from llmstack_dagster.profiles import active_profile

RETRAIN_EVERY_ENV = "LLMSTACK_RETRAIN_EVERY_DAYS"
MIXTURE = AssetKey("sampled_mixture")

training_job = define_asset_job(
    "training_job",
    selection=AssetSelection.groups(TRAINING_GROUP),
    tags={PROFILE_TAG: active_profile()},
    description="Tokenizer, token shards and the pretrained checkpoint from the current mixture.",
)


def _mixture_version(context: SensorEvaluationContext) -> str | None:
    event = context.instance.get_latest_materialization_event(MIXTURE)
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get("content_version")
    return None if value is None else str(value.value)


def _period() -> timedelta | None:
    days = os.environ.get(RETRAIN_EVERY_ENV, "")
    return timedelta(days=float(days)) if days else None


@sensor(
    job=training_job,
    default_status=DefaultSensorStatus.STOPPED,
    minimum_interval_seconds=300,
    description="Retrain when the mixture's content version changes, or every "
    f"${RETRAIN_EVERY_ENV} days; off by default.",
)
def retraining_sensor(context: SensorEvaluationContext) -> RunRequest | SkipReason:
    version = _mixture_version(context)
    if version is None:
        return SkipReason("sampled_mixture has not been materialized yet")
    state = json.loads(context.cursor) if context.cursor else {}
    now = datetime.now(UTC)
    period = _period()
    due = period is not None and "launched_at" in state and (
        now - datetime.fromisoformat(state["launched_at"]) >= period
    )
    if version == state.get("version") and not due:
        return SkipReason(f"mixture {version} already trained on")
    reason = "new mixture" if version != state.get("version") else "retraining period elapsed"
    context.update_cursor(json.dumps({"version": version, "launched_at": now.isoformat()}))
    return RunRequest(
        run_key=f"{version}-{now:%Y%m%dT%H%M%S}",
        tags={"llmstack/trigger": "retraining", "llmstack/reason": reason,
              "llmstack/mixture_version": version},  # fmt: skip
    )
