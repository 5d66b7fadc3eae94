"""Shared fixtures: the real sample data beside the checkout, and temporary storage roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmstack_dagster.core.storage import Storage

# tests (and the processes they start) run under the demo profile, whatever the shell says
os.environ["LLMSTACK_PROFILE"] = "demo"

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()

pytest_plugins = ["support.training_data", "support.ray_cluster"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with a ``slow`` test first (stable otherwise), so that ``make test``'s workers
    start the long files at once instead of ending on them."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` next to the checkout; the real sample corpora."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the shared sample data is missing at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    """A fresh local storage root."""
    return Storage(str(tmp_path / "store"))
