"""The retraining sensor: a new mixture version, or an elapsed period, launches training."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from dagster import (
    AssetMaterialization,
    DagsterInstance,
    MetadataValue,
    RunRequest,
    SkipReason,
    build_sensor_context,
)

from llmstack_dagster.definitions import defs
from llmstack_dagster.jobs.training import MIXTURE, RETRAIN_EVERY_ENV, retraining_sensor


def _mixture(instance: DagsterInstance, version: str) -> None:
    metadata = {"content_version": MetadataValue.text(version)}
    instance.report_runless_asset_event(AssetMaterialization(MIXTURE, metadata=metadata))


def _tick(instance: DagsterInstance, cursor: str | None):
    context = build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    result = retraining_sensor(context)
    return result, context.cursor


def test_a_new_mixture_version_launches_training_once(monkeypatch) -> None:
    monkeypatch.delenv(RETRAIN_EVERY_ENV, raising=False)
    with DagsterInstance.ephemeral() as instance:
        result, cursor = _tick(instance, None)
        assert isinstance(result, SkipReason)
        _mixture(instance, "aaa")
        result, cursor = _tick(instance, cursor)
        assert isinstance(result, RunRequest)
        assert result.tags["llmstack/mixture_version"] == "aaa"
        assert result.tags["llmstack/reason"] == "new mixture"
        result, cursor = _tick(instance, cursor)
        assert isinstance(result, SkipReason)
        _mixture(instance, "bbb")
        result, _ = _tick(instance, cursor)
        assert isinstance(result, RunRequest) and result.tags["llmstack/mixture_version"] == "bbb"


def test_the_period_relaunches_on_the_same_mixture(monkeypatch) -> None:
    monkeypatch.setenv(RETRAIN_EVERY_ENV, "7")
    with DagsterInstance.ephemeral() as instance:
        _mixture(instance, "aaa")
        recent = (datetime.now(UTC) - timedelta(days=1)).isoformat()
        result, _ = _tick(instance, json.dumps({"version": "aaa", "launched_at": recent}))
        assert isinstance(result, SkipReason)
        old = (datetime.now(UTC) - timedelta(days=8)).isoformat()
        result, _ = _tick(instance, json.dumps({"version": "aaa", "launched_at": old}))
        assert isinstance(result, RunRequest)
        assert result.tags["llmstack/reason"] == "retraining period elapsed"


def test_the_sensor_is_off_by_default() -> None:
    assert retraining_sensor.default_status.value == "STOPPED"
    assert defs.resolve_job_def("training_job").name == "training_job"
