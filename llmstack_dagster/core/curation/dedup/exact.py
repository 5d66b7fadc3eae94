"""Exact dedup fingerprints: xxh3-128 of the NFC + whitespace-collapsed UTF-8 bytes.

One compiled pass per block of texts collapses whitespace straight from the Arrow buffer. A
branch-free map over the block's aligned 8-byte words (which LLVM vectorises) places every
word, its whitespace made spaces, in the output buffer at the position it has in the input,
and marks by word arithmetic each that breaks a run: not ASCII, or whitespace after
whitespace (bytes to drop). Each text's normal form starts at its own position, so its runs
of words up to the next mark are already in place until the text first drops a byte, and one
``memmove`` each after that; a marked ASCII word is collapsed in one step, and code points are
decoded only around non-ASCII bytes. The same pass flags every text with a code point that
NFC might change (see :func:`nfc_stable_table`); only those texts go through Python's
``unicodedata`` (:func:`~text.normalize_exact`), so NFC costs nothing for the ASCII and
already-composed texts that make up nearly all of a corpus.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterator
from functools import cache

import numba
import numpy as np
import pyarrow as pa
import xxhash
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic

from llmstack_dagster.core.curation.dedup.text import (
    TABLE_SIZE,
    codepoint_tables,
    normalize_exact,
    utf8_buffers,
)
from llmstack_dagster.core.curation.dedup.utf8 import decode_at

SPACE, NFC_UNSTABLE = 1, 2  # bits of the per-code-point flags the kernel reads
_HIGH = np.uint64(0x8080808080808080)
_SPACES = np.uint64(0x2020202020202020)
_SHIFT7 = np.uint64(7)
_SHIFT8 = np.uint64(8)
_SHIFT56 = np.uint64(56)
BLOCK_BYTES = 1 << 20  # input bytes normalised per kernel call, into a buffer reused


@cache
def nfc_stable_table() -> np.ndarray:
    """True per code point below :data:`TABLE_SIZE` whose NFC Quick Check is Yes with class 0.

    A text made only of such code points is its own NFC (UAX #15 quick check): nothing
    decomposes, nothing reorders, and nothing can compose with a preceding character. Derived
    from ``unicodedata``: canonical class 0, NFC maps the character to itself, and it is not
    the second character of a primary composite (incl. Hangul medial and final jamo).
    """
    second = {*range(0x1161, 0x1176), *range(0x11A8, 0x11C3)}
    stable = np.zeros(TABLE_SIZE, dtype=np.bool_)
    for cp in range(TABLE_SIZE):
        char = chr(cp)
        fixed = unicodedata.normalize("NFC", char) == char
        decomposition = unicodedata.decomposition(char).split()
        if fixed and len(decomposition) == 2 and not decomposition[0].startswith("<"):
            second.add(int(decomposition[1], 16))
        stable[cp] = fixed and unicodedata.combining(char) == 0
    stable[sorted(second)] = False
    return stable


@cache
def exact_flags() -> np.ndarray:
    """uint8 :data:`SPACE` | :data:`NFC_UNSTABLE` bits per code point below TABLE_SIZE."""
    _, space, _ = codepoint_tables()
    return (space * SPACE + ~nfc_stable_table() * NFC_UNSTABLE).astype(np.uint8)


@intrinsic
def _move_bytes(
    typingctx: object,
    arr: types.Array,
    to: types.Integer,
    source: types.Integer,
    count: types.Integer,
) -> tuple[types.Signature, Callable[..., object]]:
    """``arr[to : to + count] = arr[source : source + count]`` as one ``memmove``.

    Numba compiles a slice assignment to a byte loop (about 1 GB/s here); ``memmove`` runs at
    over 10.
    """

    def codegen(
        context: object, builder: ir.IRBuilder, sig: types.Signature, args: tuple
    ) -> object:
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        to, source = builder.gep(data, [args[1]]), builder.gep(data, [args[2]])
        cgutils.raw_memmove(builder, to, source, args[3], 1)
        return context.get_dummy_value()

    return types.void(arr, types.int64, types.int64, types.int64), codegen


@intrinsic
def _load_u64(
    typingctx: object, arr: types.Array, index: types.Integer
) -> tuple[types.Signature, Callable[..., object]]:
    """The native-order uint64 of ``arr[index : index + 8]`` (one unaligned load)."""

    def codegen(
        context: object, builder: ir.IRBuilder, sig: types.Signature, args: tuple
    ) -> object:
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        source = builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(64).as_pointer())
        return builder.load(source, align=1)

    return types.uint64(arr, types.int64), codegen


@numba.njit(inline="always", cache=True)
def _bytes_at_least(x: np.uint64, low: int) -> np.uint64:
    """0x80 in every byte of the ASCII word ``x`` that is >= ``low`` (1 <= low <= 0x80)."""
    return (x + np.uint64((0x80 - low) * 0x0101010101010101)) & _HIGH


@numba.njit(inline="always", cache=True)
def ascii_whitespace_bits(x: np.uint64) -> np.uint64:
    """0x80 in every byte of the ASCII word ``x`` that ``str.split()`` splits on.

    Those are 0x09-0x0D (tab, newline, vertical tab, form feed, carriage return), the
    separators 0x1C-0x1F and the space. ``x`` is the bytes as a little-endian word (x86-64,
    aarch64), first byte lowest.
    """
    tab_to_cr = _bytes_at_least(x, 0x09) & ~_bytes_at_least(x, 0x0E)
    separators_space = _bytes_at_least(x, 0x1C) & ~_bytes_at_least(x, 0x21)
    return tab_to_cr | separators_space


@numba.njit(inline="always", cache=True)
def _drops(space: np.uint64, space_before: np.uint64) -> np.uint64:
    """0x80 in every whitespace byte that follows whitespace (``space_before``: 0x80 or 0)."""
    return space & ((space << _SHIFT8) | space_before)


@numba.njit(inline="always", cache=True)
def _as_spaces(x: np.uint64, space: np.uint64) -> np.uint64:
    """``x`` with every byte marked in ``space`` made a space."""
    return x ^ ((x ^ _SPACES) & ((space >> _SHIFT7) * np.uint64(0xFF)))


@numba.njit(cache=True)
def _place_and_break(words: np.ndarray, placed: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """Place each word, whitespace made spaces, at ``placed[k + 1]``; mark where runs break.

    A word breaks a run when it is not ASCII or holds whitespace after whitespace (bytes to
    drop), given the byte before it; such a word's placed form is not its normal form. The
    marks (1 or 0) go to ``scratch[: len(words) + 8]``; the first word and 8 past the end are
    marked (for 8-byte reads). One pure map over the words, which LLVM vectorises: loop
    indices start at 1 so that numba needs no negative-index wraparound.
    """
    breaks = scratch[: len(words) + 8]
    breaks[0] = 1
    if len(words):
        placed[1] = _as_spaces(words[0], ascii_whitespace_bits(words[0]))
    for k in range(1, len(words)):
        x = words[k]
        space = ascii_whitespace_bits(x)
        placed[k + 1] = _as_spaces(x, space)
        before = ascii_whitespace_bits(words[k - 1]) >> _SHIFT56
        breaks[k] = ((x & _HIGH) | _drops(space, before)) != 0
    breaks[len(words) :] = 1
    return breaks


@numba.njit(inline="always", cache=True)
def _run_end(breaks: np.ndarray, k: int, last: int) -> int:
    """The first ``k' >= k`` below ``last`` marked in ``breaks``, else ``last``.

    Reads eight marks per unaligned load; ``breaks`` holds 8 entries past ``last``.
    """
    while k < last:
        eight = _load_u64(breaks, k)
        if eight:
            return min(k + (trailing_zeros(eight) >> 3), last)
        k += 8
    return last


@numba.njit(inline="always", cache=True)
def _collapse_ascii_word(
    x: np.uint64, space: np.uint64, out: np.ndarray, w: int, after_space: bool
) -> tuple[int, bool]:
    """Write the 8 ASCII bytes of ``x`` at ``out[w]`` with whitespace collapsed; new state.

    Every whitespace byte is written as a space; each that follows whitespace is dropped.
    """
    drop = _drops(space, np.uint64(after_space) << _SHIFT7)
    if drop != _HIGH:  # else all 8 are whitespace after whitespace: nothing to write
        x = _as_spaces(x, space)
        for k in range(8):
            out[w] = np.uint8((x >> np.uint64(8 * k)) & np.uint64(0xFF))
            w += 1 - np.int64((drop >> np.uint64(8 * k + 7)) & np.uint64(1))
    return w, (space >> _SHIFT56) != 0


@numba.njit(cache=True)
def _collapse_whitespace(
    data: np.ndarray,
    words: np.ndarray,
    shift: int,
    offsets: np.ndarray,
    flags: np.ndarray,
    out: np.ndarray,
    scratch: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Write each text with whitespace runs made one space and both ends stripped into ``out``.

    ``words`` is ``data[shift:]`` viewed as aligned uint64. Byte ``b`` of the block has its
    place at ``out[b - base]`` (``base`` is a word boundary at least 8 bytes before the first
    text), where every word is first placed with its whitespace made spaces; each text's
    normal form starts at its own place. From an ASCII word with nothing to drop, the run of
    words up to the next marked one is then already right where it lies, or, once bytes of
    the text were dropped, moved back over them with one ``memmove``; a marked ASCII word is
    collapsed in one step; other bytes are decoded code point by code point. ``out`` is
    8-aligned and holds ``offsets[-1] - offsets[0] + 32`` bytes, ``scratch`` an eighth of
    that plus 8. Returns each text's (start, end) in ``out`` and whether it holds a code point that
    NFC might change.
    """
    n = offsets.shape[0] - 1
    spans = np.empty((n, 2), np.int64)
    unstable = np.zeros(n, np.bool_)
    lo = max(((offsets[0] - shift) >> 3) - 1, 0)
    hi = min(max(((offsets[n] - shift) >> 3) + 1, lo), len(words))
    base = shift + 8 * (lo - 1)
    breaks = _place_and_break(words[lo:hi], out.view(np.uint64), scratch)
    for d in range(n):
        w = offsets[d] - base
        spans[d, 0] = w
        after_space = True  # nothing written yet counts as a space: strips leading whitespace
        i = offsets[d]
        end = offsets[d + 1]
        while i < end:
            if (i - shift) & 7 == 0 and i + 8 <= end and (words[(i - shift) >> 3] & _HIGH) == 0:
                j = (i - shift) >> 3
                x = words[j]
                space = ascii_whitespace_bits(x)
                if _drops(space, np.uint64(after_space) << _SHIFT7) == 0:  # a run starts here
                    run = lo + _run_end(breaks, j + 1 - lo, ((end - shift) >> 3) - lo)
                    if w != i - base:  # behind its place by the bytes dropped so far
                        _move_bytes(out, w, i - base, 8 * (run - j))
                    w += 8 * (run - j)
                    i += 8 * (run - j)
                    after_space = (ascii_whitespace_bits(words[run - 1]) >> _SHIFT56) != 0
                else:
                    w, after_space = _collapse_ascii_word(x, space, out, w, after_space)
                    i += 8
                continue
            byte = data[i]
            if byte < 0x80:  # ASCII, branch-free: write it (a space as 32), keep unless 2nd space
                is_space = (flags[byte] & SPACE) != 0
                out[w] = 32 if is_space else byte
                w += not (is_space and after_space)
                after_space = is_space
                i += 1
                continue
            cp, size = decode_at(data, i)
            flag = flags[cp] if cp < flags.shape[0] else NFC_UNSTABLE
            if flag & NFC_UNSTABLE:
                unstable[d] = True
            if flag & SPACE:
                if not after_space:
                    out[w] = 32
                    w += 1
                    after_space = True
            else:
                for k in range(size):
                    out[w + k] = data[i + k]
                w += size
                after_space = False
            i += size
        if after_space and w > spans[d, 0]:
            w -= 1  # trailing space
        spans[d, 1] = w
    return spans, unstable


def _chunks(texts: pa.Array | pa.ChunkedArray | list[str]) -> list[pa.Array]:
    if isinstance(texts, list):
        return [pa.array(texts, type=pa.large_string())]
    return list(texts.chunks) if isinstance(texts, pa.ChunkedArray) else [texts]


def normal_form_blocks(
    texts: pa.Array | pa.ChunkedArray | list[str],
) -> Iterator[tuple[np.ndarray, np.ndarray, dict[int, str]]]:
    """Normal forms block by block: (bytes, (start, end) per text, reference texts by index).

    Blocks hold about :data:`BLOCK_BYTES` of input, written into one reused buffer that stays
    in cache, so each block must be consumed before the next is asked for. The bytes of a text
    with a code point that NFC might change are the kernel's collapse of its raw form; the
    third item maps the index of each such text in the block to its reference normal form,
    which is what counts.
    """
    for chunk in _chunks(texts):
        data, offsets = utf8_buffers(chunk)
        shift = -data.ctypes.data % 8
        words = data[shift : shift + max(len(data) - shift, 0) // 8 * 8].view(np.uint64)
        flags = exact_flags()
        cuts = [0]
        while cuts[-1] < len(chunk):
            limit = offsets[cuts[-1]] + BLOCK_BYTES
            cuts.append(max(int(np.searchsorted(offsets, limit, "right")) - 1, cuts[-1] + 1))
        sizes = offsets[cuts[1:]] - offsets[cuts[:-1]] if len(cuts) > 1 else np.zeros(1, np.int64)
        out = np.empty(int(sizes.max()) // 8 * 8 + 32, np.uint8)  # once: no page faults
        scratch = np.empty(len(out) // 8 + 8, np.uint8)  # a mark per word, 8 past the end
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            spans, unstable = _collapse_whitespace(
                data, words, shift, offsets[a : b + 1], flags, out, scratch
            )
            fixed = {
                i: normalize_exact(chunk[a + i].as_py()) for i in np.flatnonzero(unstable).tolist()
            }
            yield out, spans, fixed


def hash128_slices(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> bytes:
    """xxh3-128 digests (16 big-endian bytes each) of every ``data[starts[i]:ends[i]]``."""
    view, digest = memoryview(data), xxhash.xxh3_128_digest
    bounds = zip(starts.tolist(), ends.tolist(), strict=True)
    return b"".join([digest(view[s:e]) for s, e in bounds])


def normalized_bytes(texts: pa.Array | pa.ChunkedArray | list[str]) -> tuple[bytes, np.ndarray]:
    """The exact-dedup normal form of each text, as one byte string and int64 offsets."""
    forms: list[bytes] = []
    for out, spans, fixed in normal_form_blocks(texts):
        forms += [
            fixed[i].encode() if i in fixed else out[s:e].tobytes()
            for i, (s, e) in enumerate(spans.tolist())
        ]
    return b"".join(forms), np.cumsum([0] + [len(f) for f in forms], dtype=np.int64)


def exact_hash128(texts: pa.Array | pa.ChunkedArray | list[str]) -> np.ndarray:
    """xxh3-128 of each text's normal form, as uint64 (hi, lo) pairs of shape [n, 2]."""
    digests = []
    for out, spans, fixed in normal_form_blocks(texts):
        block = hash128_slices(out, spans[:, 0], spans[:, 1])
        if fixed:
            block = bytearray(block)
            for i, ref in fixed.items():
                block[16 * i : 16 * i + 16] = xxhash.xxh3_128_digest(ref.encode())
        digests.append(block)
    return np.frombuffer(b"".join(digests), dtype=">u8").reshape(-1, 2).astype(np.uint64)
