"""Map one function over many shards on an engine: this machine, a Ray cluster or Modal.

A stage hands :meth:`ShardMap.map` a picklable function and its items (small shard
descriptions: paths under a :class:`~llmstack_dagster.core.storage.Storage` root, never the
data); results come back in item order. Stages that hold a model (KenLM, a classifier, a
tokenizer) use :meth:`ShardMap.map_with_state`: ``setup()`` runs once per worker (a process of
the local pool, a Ray actor, a Modal container) and ``fn(state, item)`` once per item.

The engines: ``local`` (inline with one worker, else a spawn process pool), ``ray`` (one task
per item with ``max_retries``, or an actor pool for stateful stages; see
:mod:`.ray_backend`) and ``modal`` (``Function.map``; see :mod:`.modal_backend`).
"""

from __future__ import annotations

import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
State = TypeVar("State")


@dataclass(frozen=True)
class StageOptions:
    """What one task of a stage asks of a worker."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory_mb: int | None = None


DEFAULT_OPTIONS = StageOptions()


class ShardMap(ABC):
    """An engine that runs ``fn`` over items; every backend returns results in item order."""

    name: str = "abstract"

    @abstractmethod
    def map(
        self,
        fn: Callable[[Item], Result],
        items: Sequence[Item],
        options: StageOptions = DEFAULT_OPTIONS,
        on_result: Callable[[Result], None] | None = None,
    ) -> list[Result]:
        """``[fn(item) for item in items]``, run on the engine; ``on_result`` sees each
        result in item order as soon as it and those before it are done (progress)."""

    @abstractmethod
    def map_with_state(
        self,
        setup: Callable[[], State],
        fn: Callable[[State, Item], Result],
        items: Sequence[Item],
        options: StageOptions = DEFAULT_OPTIONS,
        on_result: Callable[[Result], None] | None = None,
    ) -> list[Result]:
        """``[fn(state, item) for item in items]`` with ``state = setup()`` once per worker."""

    @abstractmethod
    def require_shared_root(self, root: str) -> None:
        """Raise when workers of this engine cannot reach the storage root ``root``."""

    @abstractmethod
    def width(self) -> int:
        """How many tasks run at once: the window of a stage that submits in windows."""


_worker_state: dict[str, Any] = {}


def _init_worker_state(setup: Callable[[], Any]) -> None:
    _worker_state["state"] = setup()


def _call_with_worker_state(task: tuple[Callable[[Any, Any], Any], Any]) -> Any:
    fn, item = task
    return fn(_worker_state["state"], item)


class LocalShardMap(ShardMap):
    """This machine: inline with one worker (no start-up cost), else a spawn process pool.

    Spawned workers import what ``fn`` needs afresh (no forked numba or Arrow threads), so
    ``fn`` and ``setup`` must be picklable by reference: module-level functions or
    ``functools.partial`` of them. The pool of :meth:`map` starts on first use and is kept
    for later calls (like a Ray cluster's workers) until :meth:`close` or exit; a stateful
    stage gets a pool of its own, since its ``setup`` runs in each worker's initializer.
    """

    name = "local"

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.workers = workers
        self._shared: ProcessPoolExecutor | None = None

    def _pool(self, items: Sequence[Any], **kwargs: Any) -> ProcessPoolExecutor | None:
        if self.workers == 1 or len(items) <= 1:
            return None
        size = min(self.workers, len(items))
        return ProcessPoolExecutor(size, mp_context=get_context("spawn"), **kwargs)

    def close(self) -> None:
        """Stop the kept pool's workers (a later :meth:`map` starts new ones)."""
        if self._shared is not None:
            self._shared.shutdown()
            self._shared = None

    def map(
        self,
        fn: Callable[[Item], Result],
        items: Sequence[Item],
        options: StageOptions = DEFAULT_OPTIONS,
        on_result: Callable[[Result], None] | None = None,
    ) -> list[Result]:
        if self.workers == 1 or len(items) <= 1:
            return reported((fn(item) for item in items), on_result)
        if self._shared is None:
            self._shared = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"))
            weakref.finalize(self, self._shared.shutdown)
        return reported(self._shared.map(fn, items), on_result)

    def map_with_state(
        self,
        setup: Callable[[], State],
        fn: Callable[[State, Item], Result],
        items: Sequence[Item],
        options: StageOptions = DEFAULT_OPTIONS,
        on_result: Callable[[Result], None] | None = None,
    ) -> list[Result]:
        pool = self._pool(items, initializer=_init_worker_state, initargs=(setup,))
        if pool is None:
            state = setup()
            return reported((fn(state, item) for item in items), on_result)
        with pool:
            tasks = [(fn, item) for item in items]
            return reported(pool.map(_call_with_worker_state, tasks), on_result)

    def width(self) -> int:
        return self.workers

    def require_shared_root(self, root: str) -> None:
        if self.workers > 1 and root.startswith("memory://"):
            raise ValueError(f"worker processes cannot see the in-process storage root {root!r}")


def reported(results: Iterable[Result], on_result: Callable[[Result], None] | None) -> list[Result]:
    """The results as a list, each passed to ``on_result`` first (when given)."""
    out = []
    for result in results:
        if on_result is not None:
            on_result(result)
        out.append(result)
    return out


def local_or(shard_map: ShardMap | None) -> ShardMap:
    """The given engine, or the inline local one (what the stages used before scale-out)."""
    return shard_map if shard_map is not None else LocalShardMap()
