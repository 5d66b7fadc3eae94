"""Resumable per-shard maps: recorded tasks are not run again and their results are reused."""

from functools import partial

import pytest
from support.resume import FailOnce

from llmstack_dagster.core.scale.resumable import map_resumable
from llmstack_dagster.core.scale.shard_map import LocalShardMap
from llmstack_dagster.core.storage import Storage


def square(offset: int, x: int) -> int:
    return x * x + offset


def load() -> dict:
    return {"loaded": True}


def test_a_retry_runs_only_the_tasks_without_a_record(storage: Storage) -> None:
    task = FailOnce(partial(square, 1), fail_at=3)
    with pytest.raises(RuntimeError, match="killed"):
        map_resumable(LocalShardMap(), storage, "w", task, [1, 2, 3, 4])
    assert storage.list("w") == ["w/000000.pkl", "w/000001.pkl"]
    task.retry()
    seen: list[int] = []
    assert map_resumable(LocalShardMap(), storage, "w", task, [1, 2, 3, 4],
                         on_result=seen.append) == [2, 5, 10, 17]  # fmt: skip
    assert task.calls == 2 and sorted(seen) == [2, 5, 10, 17]
    assert map_resumable(LocalShardMap(), storage, "other", task, [1, 2, 3, 4]) == [2, 5, 10, 17]
    assert task.calls == 6


def test_keys_name_the_records_and_a_done_stage_loads_no_state(storage: Storage) -> None:
    stateful = FailOnce(lambda state, x: (state["loaded"], -x), fail_at=0)
    setup = FailOnce(load, fail_at=0)
    out = map_resumable(LocalShardMap(), storage, "w", stateful, [5, 6], setup=setup,
                        keys=["a", "b"])  # fmt: skip
    assert out == [(True, -5), (True, -6)] and setup.calls == 1
    assert storage.list("w") == ["w/a.pkl", "w/b.pkl"]
    assert map_resumable(LocalShardMap(), storage, "w", stateful, [5, 6], setup=setup,
                         keys=["a", "b"]) == out  # fmt: skip
    assert setup.calls == 1 and stateful.calls == 2
    with pytest.raises(ValueError, match="2 keys for 1 items"):
        map_resumable(LocalShardMap(), storage, "w", stateful, [5], keys=["a", "b"])
