"""The storage root every asset reads and writes, as a Dagster resource."""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from llmstack_dagster.core.storage import Storage
from llmstack_dagster.profiles import active_profile

STORAGE_ROOT_ENV = "LLMSTACK_STORAGE_ROOT"


def default_storage_root() -> str:
    """``$LLMSTACK_STORAGE_ROOT`` (default ``./data``) / the active profile."""
    base = os.environ.get(STORAGE_ROOT_ENV, "") or "./data"
    return f"{base.rstrip('/')}/{active_profile()}"


class StorageResource(ConfigurableResource):
    """An fsspec URL (``./data/demo``, ``s3://bucket/llmstack/full``, ``memory://...``); by
    default the base root of ``$LLMSTACK_STORAGE_ROOT`` keyed by the active profile."""

    root: str = Field(default_factory=default_storage_root)
    storage_options: dict[str, Any] = Field(default_factory=dict)

    def get(self) -> Storage:
        if self.root.startswith("memory://") and multiprocessing.parent_process() is not None:
            # a memory:// filesystem lives in one process; a step process of the
            # multiprocess executor would see an empty root and lose what it writes
            raise ValueError(
                f"storage root {self.root!r} is process-local and this step runs in a child "
                "process of the multiprocess executor; run the job with the in-process "
                "executor (execution: {config: {in_process: {}}}) or use a file or "
                "object-store root (LLMSTACK_STORAGE_ROOT)"
            )
        return Storage(self.root, **self.storage_options)
