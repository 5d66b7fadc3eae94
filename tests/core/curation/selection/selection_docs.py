"""Building document rows for selection tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from llmstack_dagster.core.schema import make_document

BASE_DATE = datetime(2020, 1, 1, tzinfo=UTC)


def document_rows(
    texts: list[str], domain: str, source: str, **extra_columns: list[Any]
) -> list[dict[str, Any]]:
    """Documents with distinct ids and one day between consecutive ``created`` dates."""
    rows = []
    for i, text in enumerate(texts):
        row = make_document(
            id=f"{source}/{i}",
            text=text,
            domain=domain,
            source=source,
            created=BASE_DATE + timedelta(days=i),
        )
        row.update({name: values[i] for name, values in extra_columns.items()})
        rows.append(row)
    return rows
