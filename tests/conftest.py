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
    """Files holding ``slow`` tests first, the longest first (``slow(seconds=N)`` estimates a
    test's time; a bare ``slow`` counts 30 s), the others after in their order, so that
    ``make test``'s workers start the long files at once instead of ending on them."""
    weight: dict[Path, float] = {}
    for item in items:
        if (marker := item.get_closest_marker("slow")) is not None:
            seconds = marker.kwargs.get("seconds", 30)
            weight[item.path] = max(weight.get(item.path, 0), seconds)
    items.sort(key=lambda item: -weight.get(item.path, 0))


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
