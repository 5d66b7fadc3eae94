"""The shard_map resource picks its backend from the environment, like the training one."""

import os
import subprocess
import sys
import tempfile

import dagster as dg
import pytest

from llmstack_dagster.core.scale.modal_backend import ModalShardMap
from llmstack_dagster.core.scale.ray_backend import RayShardMap
from llmstack_dagster.core.scale.shard_map import LocalShardMap
from llmstack_dagster.resources.shard_map import (
    LocalShardMapResource,
    ModalShardMapResource,
    RayShardMapResource,
    ShardMapResource,
    shard_map_from_env,
    shard_map_resource_from_env,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LLMSTACK_SHARD_MAP", "LLMSTACK_SHARD_MAP_WORKERS",
                 "LLMSTACK_DEDUP_SHUFFLE_PARTITIONS"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


def test_default_is_local_inline_without_shuffle() -> None:
    resource = shard_map_resource_from_env()
    assert isinstance(resource, LocalShardMapResource)
    engine = resource.get()
    assert isinstance(engine, LocalShardMap) and engine.workers == 1
    assert resource.shuffle() is None


@pytest.mark.parametrize(
    ("backend", "resource_type", "engine_type"),
    [
        ("local", LocalShardMapResource, LocalShardMap),
        ("RAY", RayShardMapResource, RayShardMap),
        ("modal", ModalShardMapResource, ModalShardMap),
    ],
)
def test_backend_from_env(monkeypatch, backend, resource_type, engine_type) -> None:
    monkeypatch.setenv("LLMSTACK_SHARD_MAP", backend)
    monkeypatch.setenv("LLMSTACK_SHARD_MAP_WORKERS", "2")
    monkeypatch.setenv("LLMSTACK_DEDUP_SHUFFLE_PARTITIONS", "8")
    resource = shard_map_resource_from_env()
    assert type(resource) is resource_type
    assert isinstance(resource.get(), engine_type)
    assert isinstance(shard_map_from_env(), engine_type)
    assert resource.shuffle().partitions == 8
    if backend != "modal":
        assert resource.get().workers == 2


def test_unknown_backend_is_an_error(monkeypatch) -> None:
    monkeypatch.setenv("LLMSTACK_SHARD_MAP", "spark")
    with pytest.raises(ValueError, match="'local', 'ray' or 'modal'"):
        shard_map_resource_from_env()


def test_an_asset_gets_the_engine_through_the_resource() -> None:
    @dg.asset
    def engine_name(shard_map: ShardMapResource) -> str:
        return f"{shard_map.get().name}:{shard_map.get().workers}"

    resources = {"shard_map": LocalShardMapResource(workers=3)}
    result = dg.materialize([engine_name], resources=resources)
    assert result.output_for_node("engine_name") == "local:3"


RAY_ASSET_SCRIPT = """
import dagster as dg
from dagster_ray import LocalRay
from llmstack_dagster.core.scale.ray_backend import ray_runtime_env
from llmstack_dagster.resources.shard_map import RayShardMapResource, ShardMapResource

@dg.asset
def squares(shard_map: ShardMapResource) -> list:
    import ray
    assert ray.is_initialized()  # connected by the dagster-ray resource
    return shard_map.get().map(abs, [-1, -2, -3])

init = {"num_cpus": 1, "include_dashboard": False, "runtime_env": ray_runtime_env()}
cluster = LocalRay(ray_init_options=init)
resources = {"shard_map": RayShardMapResource(ray_cluster=cluster)}
result = dg.materialize([squares], resources=resources)
print("RESULT", result.output_for_node("squares"))
"""


@pytest.mark.ray
def test_ray_resource_connects_through_dagster_ray() -> None:
    """In a subprocess: ``LocalRay`` would shut down the session's cluster on cleanup. A short
    temporary folder: Ray's socket paths must stay under 107 bytes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # no session address
    with tempfile.TemporaryDirectory(prefix="ray-") as short:
        env.update(RAY_AUTH_MODE="disabled", RAY_TMPDIR=short)
        done = subprocess.run([sys.executable, "-c", RAY_ASSET_SCRIPT], env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
    assert "RESULT [1, 2, 3]" in done.stdout, done.stderr[-3000:]
