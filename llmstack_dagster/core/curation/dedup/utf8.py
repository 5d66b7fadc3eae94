"""A compiled UTF-8 decoder step (input is valid UTF-8: Arrow validates strings)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(inline="always", cache=True)
def decode_at(data: np.ndarray, i: int) -> tuple[int, int]:
    """(code point, byte length) of the character starting at ``data[i]``."""
    b0 = np.int64(data[i])
    if b0 < 0x80:
        return b0, 1
    if b0 < 0xE0:
        return ((b0 & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F), 2
    if b0 < 0xF0:
        cp = ((b0 & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6)
        return cp | (np.int64(data[i + 2]) & 0x3F), 3
    cp = ((b0 & 0x07) << 18) | ((np.int64(data[i + 1]) & 0x3F) << 12)
    cp |= (np.int64(data[i + 2]) & 0x3F) << 6
    return cp | (np.int64(data[i + 3]) & 0x3F), 4
