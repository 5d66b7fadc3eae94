"""The storage root every asset reads and writes, as a Dagster resource."""

from __future__ import annotations

import os
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from llmstack_dagster.core.storage import Storage

STORAGE_ROOT_ENV = "LLMSTACK_STORAGE_ROOT"


def default_storage_root() -> str:
    return os.environ.get(STORAGE_ROOT_ENV, "./data")


class StorageResource(ConfigurableResource):
    """An fsspec URL (``./data``, ``s3://bucket/llmstack``, ``gs://...``, ``memory://...``)."""

    root: str = Field(default_factory=default_storage_root)
    storage_options: dict[str, Any] = Field(default_factory=dict)

    def get(self) -> Storage:
        return Storage(self.root, **self.storage_options)
