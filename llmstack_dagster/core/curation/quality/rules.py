"""Threshold rules: a metric, a bound and the reason a document fails it."""

from __future__ import annotations

import math

from pydantic import BaseModel


class Rule(BaseModel):
    """Fail reason ``name`` when ``metric`` is above ``max`` or below ``min``."""

    name: str
    metric: str
    min: float | None = None
    max: float | None = None

    def fails(self, value: float | None) -> bool:
        if value is None or math.isnan(value):
            return True
        return (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        )


def failed_rules(metrics: dict[str, float | None], rules: list[Rule]) -> list[str]:
    """Names of the rules the metrics fail, in rule order."""
    return [rule.name for rule in rules if rule.fails(metrics.get(rule.metric))]
