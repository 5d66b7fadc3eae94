"""The queued run coordinator, tagging every submitted run with the active profile.

Runs launched from the UI's launchpad or by a sensor carry no tag of ours; the coordinator
sees every run before it is queued, so it adds ``llmstack/profile`` (the profile of the
process that submits it, the same ``$LLMSTACK_PROFILE`` as the code it runs under
``make ui``) unless the run already names one.
"""

from __future__ import annotations

from dagster import DagsterRun
from dagster._core.run_coordinator import QueuedRunCoordinator, SubmitRunContext

from llmstack_dagster.profiles import active_profile

PROFILE_TAG = "llmstack/profile"


class ProfileTaggingRunCoordinator(QueuedRunCoordinator):
    """``QueuedRunCoordinator`` + the ``llmstack/profile`` tag on each run it submits."""

    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        run = context.dagster_run
        if PROFILE_TAG not in run.tags:
            self._instance.add_run_tags(run.run_id, {PROFILE_TAG: active_profile()})
            run = self._instance.get_run_by_id(run.run_id) or run
            context = SubmitRunContext(run, context.workspace)
        return super().submit_run(context)
