"""A session-wide in-process Ray cluster for the ``ray``-marked tests (never ``ray stop``:
it would kill every Ray process on the host, other sessions' included)."""

import os
import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """``ray.init(num_cpus=2)`` without dashboard in a short temporary folder (Ray's socket
    paths must stay under 107 bytes); token auth off."""
    import ray

    from llmstack_dagster.core.scale.ray_backend import ray_runtime_env

    previous = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    temp = tempfile.TemporaryDirectory(prefix="ray-", ignore_cleanup_errors=True)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=temp.name,
        runtime_env=ray_runtime_env(),
        log_to_driver=False,
        logging_level="ERROR",
    )
    try:
        yield
    finally:
        ray.shutdown()
        temp.cleanup()
        if previous is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = previous
