"""The records a reader yields, the error for a source that cannot be read at all, and the
error for one file that cannot be opened."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


class SourceError(RuntimeError):
    """A source cannot be read at all (missing file, unreachable hub); names the source."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"source {source!r}: {message}")
        self.source = source
        self.message = message

    def __reduce__(self) -> tuple[type[SourceError], tuple[str, str]]:
        return SourceError, (self.source, self.message)  # raised again by a worker's caller


@dataclass(frozen=True)
class RawRecord:
    """One native record, or the reason it could not be decoded."""

    uri: str
    locator: str
    record: dict[str, Any] | None = None
    error: str | None = None
    detail: str | None = None
    sample: bytes | str | None = None
    created: datetime | None = None


class BadFile(Exception):
    """A file that cannot be opened; becomes one quarantine row."""

    def __init__(self, uri: str, reason: str, detail: str, locator: str = "file") -> None:
        super().__init__(f"{uri}: {reason}: {detail}")
        self.uri, self.reason, self.detail, self.locator = uri, reason, detail, locator
