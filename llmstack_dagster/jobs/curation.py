"""The curation job (one domain partition by hand) and the nightly re-curation sensor."""

from __future__ import annotations

from dagster import AssetSelection, AutomationConditionSensorDefinition, define_asset_job

from llmstack_dagster.assets.common import CURATION_GROUP
from llmstack_dagster.instance.run_coordinator import PROFILE_TAG
from llmstack_dagster.profiles import active_profile

curation_job = define_asset_job(
    "curation_job",
    selection=AssetSelection.groups(CURATION_GROUP),
    tags={PROFILE_TAG: active_profile()},
    description="Re-curate one domain partition: every curation asset of that domain.",
)

# Evaluates each curation asset's NIGHTLY_RECURATION condition (assets/common.py) and launches
# what is due as one backfill per evaluation: domain partitions once each, global assets once.
nightly_recuration = AutomationConditionSensorDefinition(
    "nightly_recuration",
    target=AssetSelection.groups(CURATION_GROUP),
    run_tags={"llmstack/trigger": "nightly", PROFILE_TAG: active_profile()},
    description="Nightly re-curation (02:00 UTC, or $LLMSTACK_NIGHTLY_CRON): every domain "
    "partition once, then each global asset once after the partitions it reads.",
)
