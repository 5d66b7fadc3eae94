"""Exact dedup fingerprints: xxh3-128 of the NFC + whitespace-collapsed UTF-8 bytes."""

from __future__ import annotations

import numba
import numpy as np
import pyarrow as pa
import xxhash

from llmstack_dagster.core.curation.dedup.text import as_text_array, codepoint_tables, utf8_buffers
from llmstack_dagster.core.curation.dedup.utf8 import decode_at


@numba.njit(cache=True)
def _collapse_whitespace(
    data: np.ndarray, offsets: np.ndarray, space: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Copy each text with whitespace runs made one space and both ends stripped."""
    n = offsets.shape[0] - 1
    out = np.empty(offsets[n] - offsets[0], np.uint8)
    out_offsets = np.empty(n + 1, np.int64)
    w = 0
    for d in range(n):
        out_offsets[d] = w
        pending_space = False
        i = offsets[d]
        end = offsets[d + 1]
        while i < end:
            byte = data[i]
            if byte < 0x80:  # ASCII fast path
                if space[byte]:
                    pending_space = w > out_offsets[d]
                else:
                    if pending_space:
                        out[w] = 32
                        w += 1
                        pending_space = False
                    out[w] = byte
                    w += 1
                i += 1
                continue
            cp, size = decode_at(data, i)
            if cp < space.shape[0] and space[cp]:
                pending_space = w > out_offsets[d]
            else:
                if pending_space:
                    out[w] = 32
                    w += 1
                    pending_space = False
                for k in range(size):
                    out[w + k] = data[i + k]
                w += size
            i += size
    out_offsets[n] = w
    return out, out_offsets


def normalized_bytes(texts: pa.Array | pa.ChunkedArray | list[str]) -> tuple[bytes, np.ndarray]:
    """The exact-dedup normal form of each text, as one byte string and int64 offsets."""
    data, offsets = utf8_buffers(as_text_array(texts))
    _, space, _ = codepoint_tables()
    out, out_offsets = _collapse_whitespace(data, offsets, space)
    return out.tobytes(), out_offsets


def exact_hash128(texts: pa.Array | pa.ChunkedArray | list[str]) -> np.ndarray:
    """xxh3-128 of each text's normal form, as uint64 (hi, lo) pairs of shape [n, 2]."""
    blob, offsets = normalized_bytes(texts)
    view = memoryview(blob)
    bounds = offsets.tolist()
    out = np.empty((len(bounds) - 1, 2), dtype=np.uint64)
    digest = xxhash.xxh3_128_digest
    raw = b"".join(digest(view[s:e]) for s, e in zip(bounds[:-1], bounds[1:], strict=True))
    out[:] = np.frombuffer(raw, dtype=">u8").reshape(-1, 2)
    return out
