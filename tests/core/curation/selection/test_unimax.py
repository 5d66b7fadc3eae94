import pytest

from llmstack_dagster.core.curation.selection.unimax import unimax_allocation

SIZES = {"a": 10.0, "b": 20.0, "c": 70.0}


def test_small_sources_capped_leftover_flows_to_larger():
    # 60/3 = 20 > 10 -> a: 10; 50/2 = 25 > 20 -> b: 20; c gets the remaining 30
    assert unimax_allocation(SIZES, 60) == {"a": 10, "b": 20, "c": 30}


def test_uncapped_budget_is_split_equally():
    assert unimax_allocation({"a": 100.0, "b": 200.0, "c": 300.0}, 90) == pytest.approx(
        {"a": 30, "b": 30, "c": 30}
    )


def test_budget_larger_than_epochs_times_total():
    assert unimax_allocation(SIZES, 300, max_epochs=1) == {"a": 10, "b": 20, "c": 70}
    assert unimax_allocation(SIZES, 300, max_epochs=2) == {"a": 20, "b": 40, "c": 140}


def test_all_sources_small():
    assert unimax_allocation({"x": 1.0, "y": 2.0, "z": 3.0}, 100, max_epochs=4) == {
        "x": 4,
        "y": 8,
        "z": 12,
    }


def test_one_dominant_source():
    # 100/3 -> 5 (cap); 95/2 -> 5 (cap); the dominant source takes the other 90
    assert unimax_allocation({"s1": 5.0, "s2": 5.0, "big": 990.0}, 100) == {
        "s1": 5,
        "s2": 5,
        "big": 90,
    }


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        unimax_allocation(SIZES, -1)
    with pytest.raises(ValueError):
        unimax_allocation(SIZES, 10, max_epochs=0)
