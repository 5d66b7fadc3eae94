"""The Dagster code location: every asset module under ``assets/``, jobs, sensors, resources."""

from __future__ import annotations

from dagster import (
    Definitions,
    load_asset_checks_from_package_module,
    load_assets_from_package_module,
)

from llmstack_dagster import assets
from llmstack_dagster.jobs.curation import curation_job, nightly_recuration
from llmstack_dagster.jobs.training import retraining_sensor, training_job
from llmstack_dagster.resources.corpus import CorpusResource
from llmstack_dagster.resources.shard_map import shard_map_resource_from_env
from llmstack_dagster.resources.storage import StorageResource
from llmstack_dagster.resources.training import training_resource_from_env

defs = Definitions(
    assets=load_assets_from_package_module(assets),
    asset_checks=load_asset_checks_from_package_module(assets),
    jobs=[curation_job, training_job],
    sensors=[nightly_recuration, retraining_sensor],
    resources={
        "storage": StorageResource(),
        "corpus": CorpusResource(),
        "training": training_resource_from_env(),
        "shard_map": shard_map_resource_from_env(),
    },
)
