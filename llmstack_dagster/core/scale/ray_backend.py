"""The Ray engine: one Ray task per shard (``max_retries``), an actor pool for stages that
hold a model, ``num_gpus`` where a stage can use one.

Workers do not see the driver's ``sys.path``: :func:`ray_runtime_env` ships this package as a
``py_module`` and sets ``NUMBA_CACHE_DIR`` to a writable folder (numba's ``cache=True`` writes
next to the package otherwise, which fails on read-only images). Ray Data is not used: its
Parquet reader merges small files into one read task, so shards would not map one to one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import ray
from ray.util.actor_pool import ActorPool

from llmstack_dagster.core.scale.shard_map import (
    DEFAULT_OPTIONS,
    Item,
    Result,
    ShardMap,
    StageOptions,
    State,
    reported,
)

NUMBA_CACHE_DIR = "/tmp/llmstack-numba-cache"
PACKAGE_DIR = Path(__file__).resolve().parents[2]


def ray_runtime_env(ship_package: bool = True) -> dict[str, Any]:
    """The ``runtime_env`` every worker needs: this package and a writable numba cache."""
    env: dict[str, Any] = {"env_vars": {"NUMBA_CACHE_DIR": NUMBA_CACHE_DIR}}
    if ship_package:
        env["py_modules"] = [str(PACKAGE_DIR)]
    return env


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)


class _StatefulWorker:
    """One actor: ``setup()`` once, then any number of items."""

    def __init__(self, setup: Callable[[], Any]) -> None:
        self.state = setup()

    def run(self, fn: Callable[[Any, Any], Any], item: Any) -> Any:
        return fn(self.state, item)


class RayShardMap(ShardMap):
    """Runs on the Ray cluster this process is connected to (``ray.init`` first, or let
    :meth:`connect` do it with ``address`` and :func:`ray_runtime_env`).

    ``workers`` caps the tasks in flight (None: as many as the cluster schedules); with
    ``workers=1`` the shards run one after the other, as on one local worker. ``model_gpus``
    is what each actor of a model-holding stage asks for (a stage may ask for more).
    """

    name = "ray"

    def __init__(
        self,
        workers: int | None = None,
        max_retries: int = 3,
        address: str | None = None,
        runtime_env: dict[str, Any] | None = None,
        model_gpus: float = 0.0,
    ) -> None:
        self.workers = workers
        self.model_gpus = model_gpus
        self.max_retries = max_retries
        self.address = address
        self.runtime_env = runtime_env if runtime_env is not None else ray_runtime_env()

    def connect(self) -> None:
        """Join the cluster at ``address`` (or ``RAY_ADDRESS``, or a new local one) if needed."""
        if not ray.is_initialized():
            ray.init(address=self.address, runtime_env=self.runtime_env)

    def _resources(self, options: StageOptions) -> dict[str, Any]:
        resources: dict[str, Any] = {"num_cpus": options.num_cpus, "num_gpus": options.num_gpus}
        if options.memory_mb:
            resources["memory"] = options.memory_mb * 1024 * 1024
        return resources

    def map(
        self,
        fn: Callable[[Item], Result],
        items: Sequence[Item],
        options: StageOptions = DEFAULT_OPTIONS,
        on_result: Callable[[Result], None] | None = None,
    ) -> list[Result]:
        self.connect()
        task = ray.remote(_call).options(max_retries=self.max_retries, **self._resources(options))
        fn_ref = ray.put(fn)
        submitted = _bounded(lambda item: task.remote(fn_ref, item), items, self.workers)
        return reported((ray.get(ref) for ref in submitted), on_result)

    def pool_size(self, items: Sequence[Any], options: StageOptions) -> int:
        """Actors for a stateful stage: ``workers``, else what the cluster's CPUs/GPUs fit."""
        if self.workers is not None:
            return max(1, min(self.workers, len(items)))
        cluster = ray.cluster_resources()
        fits = [cluster.get("CPU", 1) / options.num_cpus] if options.num_cpus else []
        if options.num_gpus:
            fits.append(cluster.get("GPU", 0) / options.num_gpus)
        return max(1, min(len(items), int(min(fits)) if fits else len(items)))

    def map_with_state(
        self,
        setup: Callable[[], State],
        fn: Callable[[State, Item], Result],
        items: Sequence[Item],
        options: StageOptions = DEFAULT_OPTIONS,
        on_result: Callable[[Result], None] | None = None,
    ) -> list[Result]:
        self.connect()
        options = replace(options, num_gpus=max(options.num_gpus, self.model_gpus))
        actor = ray.remote(_StatefulWorker).options(
            max_restarts=self.max_retries,
            max_task_retries=self.max_retries,
            **self._resources(options),
        )
        actors = [actor.remote(setup) for _ in range(self.pool_size(items, options))]
        try:
            pool = ActorPool(actors)
            results = pool.map(lambda worker, item: worker.run.remote(fn, item), list(items))
            return reported(results, on_result)
        finally:
            for worker in actors:
                ray.kill(worker)

    def width(self) -> int:
        """``workers``, else the cluster's CPUs."""
        if self.workers is not None:
            return self.workers
        self.connect()
        return max(1, int(ray.cluster_resources().get("CPU", 1)))

    def require_shared_root(self, root: str) -> None:
        if root.startswith("memory://"):
            raise ValueError(f"Ray workers cannot see the in-process storage root {root!r}")


def _bounded(
    submit: Callable[[Any], ray.ObjectRef], items: Sequence[Any], limit: int | None
) -> list[ray.ObjectRef]:
    """Submit with at most ``limit`` tasks in flight; the refs in item order."""
    refs: list[ray.ObjectRef] = []
    pending: list[ray.ObjectRef] = []
    for item in items:
        if limit is not None and len(pending) >= limit:
            _, pending = ray.wait(pending, num_returns=1)
        ref = submit(item)
        refs.append(ref)
        pending.append(ref)
    return refs
