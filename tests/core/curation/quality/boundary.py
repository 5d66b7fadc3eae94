"""Helpers to show a rule flips exactly where its metric crosses its threshold."""

from __future__ import annotations

from collections.abc import Callable

from llmstack_dagster.core.curation.quality.rules import Rule, failed_rules

Metrics = Callable[[str], dict[str, float | None]]


def assert_flips_at_threshold(
    make: Callable[[int], str], rule: Rule, metrics: Metrics, limit: int = 3000
) -> int:
    """``make(0)`` passes ``rule``; find the first k where it fails and check the metric there
    is beyond the bound while at k - 1 it is within. Returns k."""
    assert rule.name not in failed_rules(metrics(make(0)), [rule])
    for k in range(1, limit):
        value = metrics(make(k))[rule.metric]
        if rule.fails(value):
            before = metrics(make(k - 1))[rule.metric]
            bound = rule.max if rule.max is not None else rule.min
            assert before is not None and value is not None and bound is not None
            if rule.max is not None:
                assert before <= bound < value
            else:
                assert value < bound <= before
            return k
    raise AssertionError(f"{rule.name} never failed within {limit} steps")
