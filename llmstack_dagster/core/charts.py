"""PNG charts for asset metadata: matplotlib ``Figure`` objects, never pyplot's global state
(safe in threads and without a display)."""

from __future__ import annotations

import io

from matplotlib.figure import Figure


def figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=100)


def png_bytes(fig: Figure) -> bytes:
    """The figure, laid out tightly, as PNG bytes."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
