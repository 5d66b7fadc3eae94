"""The local engine: inline with one worker, a spawn pool with more; item order kept."""

import os
from functools import partial

import pytest

from llmstack_dagster.core.scale.shard_map import LocalShardMap


def square_with_pid(offset: int, x: int) -> tuple[int, int]:
    return x * x + offset, os.getpid()


def load_model() -> dict:
    return {"pid": os.getpid(), "loaded_at": os.times().elapsed}


def use_model(model: dict, x: int) -> tuple[int, float, int]:
    return model["pid"], model["loaded_at"], -x


def test_inline_runs_in_this_process_in_order() -> None:
    seen = []
    out = LocalShardMap().map(partial(square_with_pid, 1), [3, 1, 2], on_result=seen.append)
    assert [v for v, _ in out] == [10, 2, 5]
    assert {pid for _, pid in out} == {os.getpid()}
    assert seen == out


def test_pool_uses_other_processes_and_keeps_order() -> None:
    out = LocalShardMap(workers=2).map(partial(square_with_pid, 0), list(range(8)))
    assert [v for v, _ in out] == [x * x for x in range(8)]
    assert os.getpid() not in {pid for _, pid in out}


def test_state_is_set_up_once_per_worker() -> None:
    inline = LocalShardMap().map_with_state(load_model, use_model, [1, 2, 3])
    assert len({(pid, t) for pid, t, _ in inline}) == 1
    pooled = LocalShardMap(workers=2).map_with_state(load_model, use_model, list(range(10)))
    assert [v for _, _, v in pooled] == [-x for x in range(10)]
    models = {(pid, t) for pid, t, _ in pooled}
    assert 1 <= len(models) <= 2 and len({pid for pid, _ in models}) == len(models)


def test_worker_processes_cannot_use_a_memory_root() -> None:
    LocalShardMap().require_shared_root("memory://x")
    with pytest.raises(ValueError, match="in-process storage root"):
        LocalShardMap(workers=2).require_shared_root("memory://x")
    with pytest.raises(ValueError):
        LocalShardMap(workers=0)
