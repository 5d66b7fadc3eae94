"""Progress of a long loop as a few log lines: done / total, rate and time left.

Stages log through the standard ``logging`` module (logger names under ``llmstack_dagster``):
``llmstack demo`` prints them, and Dagster captures them into the run's logs
(``python_logs`` in ``deploy/dagster.yaml``). At most one line every ``every_s`` seconds.
"""

from __future__ import annotations

import logging
import time


def format_eta(seconds: float) -> str:
    """``42 s``, ``3 min 05 s`` or ``2 h 07 min``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """Counts items of a known total and logs ``label: done/total (rate/s, ETA ...)``."""

    def __init__(
        self, label: str, total: int, logger: logging.Logger, unit: str = "docs",
        every_s: float = 5.0,
    ) -> None:  # fmt: skip
        self.label, self.total, self.logger, self.unit = label, total, logger, unit
        self.every_s = every_s
        self.done = 0
        self.started = self._last = time.monotonic()

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= self.every_s and self.done < self.total:
            self._last = now
            self.logger.info(self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.started, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta = format_eta(left) if left != float("inf") else "?"
        return (
            f"{self.label}: {self.done:,}/{self.total:,} {self.unit} "
            f"({rate:,.0f} {self.unit}/s, ETA {eta})"
        )

    def finish(self) -> None:
        elapsed = time.monotonic() - self.started
        self.logger.info(f"{self.label}: {self.done:,} {self.unit} in {format_eta(elapsed)}")
