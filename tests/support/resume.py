"""A stand-in for a stage's per-shard function that counts its calls and fails once."""

from collections.abc import Callable
from typing import Any


class FailOnce:
    """Calls ``fn``; the ``fail_at``-th call of the first attempt raises (a killed task)."""

    def __init__(self, fn: Callable[..., Any], fail_at: int = 2) -> None:
        self.fn = fn
        self.fail_at = fail_at
        self.calls = 0
        self.armed = True

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        if self.armed and self.calls == self.fail_at:
            raise RuntimeError("task killed")
        return self.fn(*args)

    def retry(self) -> None:
        """Count the calls of the next attempt, which does not fail."""
        self.calls = 0
        self.armed = False
