"""Per-shard stages that a retry resumes: finished tasks are recorded and not run again.

Each task runs on the engine as usual, writes its outputs, then writes its result (pickled,
small: shard descriptions and figures) as a completion record ``{work}/{key}.pkl``. Before
mapping, the driver reads the records already in ``work``: those tasks are not run again and
their recorded results are used. ``work`` is a folder of the version being written
(:meth:`~llmstack_dagster.core.storage.OutputVersion.work`), which only a retry of the same
run finds again and which is removed when the version commits; see
:mod:`llmstack_dagster.core.storage`. The records are written and read by this package only.
"""

from __future__ import annotations

import pickle
import posixpath
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from llmstack_dagster.core.scale.shard_map import (
    DEFAULT_OPTIONS,
    Item,
    Result,
    ShardMap,
    StageOptions,
    State,
)
from llmstack_dagster.core.storage import Storage

RECORD_SUFFIX = ".pkl"


def _recorded(fn: Callable[[Any], Any], storage: Storage, task: tuple[str, Any]) -> Any:
    record, item = task
    result = fn(item)
    storage.write_bytes(record, pickle.dumps(result))
    return result


def _recorded_with_state(
    fn: Callable[[Any, Any], Any], storage: Storage, state: Any, task: tuple[str, Any]
) -> Any:
    record, item = task
    result = fn(state, item)
    storage.write_bytes(record, pickle.dumps(result))
    return result


def map_resumable(
    engine: ShardMap,
    storage: Storage,
    work: str,
    fn: Callable[[Item], Result] | Callable[[State, Item], Result],
    items: Sequence[Item],
    *,
    setup: Callable[[], State] | None = None,
    keys: Sequence[str] | None = None,
    options: StageOptions = DEFAULT_OPTIONS,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """``engine.map(fn, items)`` (``map_with_state`` when ``setup`` is given), but items whose
    completion record is in ``work`` are not run again: their recorded result is returned.

    ``keys`` name the records (default: the item's position); an item's key must not change
    between attempts. ``on_result`` sees the recorded results first, then the others.
    """
    keys = list(keys) if keys is not None else [f"{i:06d}" for i in range(len(items))]
    if len(keys) != len(items):
        raise ValueError(f"{len(keys)} keys for {len(items)} items")
    records = [posixpath.join(work, key + RECORD_SUFFIX) for key in keys]
    done = set(storage.list(work, RECORD_SUFFIX))
    results: list[Any] = [None] * len(items)
    todo = []
    for i, record in enumerate(records):
        if record in done:
            results[i] = pickle.loads(storage.read_bytes(record))
            if on_result is not None:
                on_result(results[i])
        else:
            todo.append(i)
    if not todo:
        return results
    tasks = [(records[i], items[i]) for i in todo]
    if setup is None:
        fresh = engine.map(partial(_recorded, fn, storage), tasks, options, on_result)
    else:
        task_fn = partial(_recorded_with_state, fn, storage)
        fresh = engine.map_with_state(setup, task_fn, tasks, options, on_result)
    for i, result in zip(todo, fresh, strict=True):
        results[i] = result
    return results
