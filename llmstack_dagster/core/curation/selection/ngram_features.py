"""Hashed n-gram features, computed exactly as DSIR's reference implementation does.

The reference (PyPI ``data-selection``, ``HashedNgramDSIR``) lowercases the text, splits it with
nltk's ``WordPunctTokenizer`` (pattern ``\\w+|[^\\w\\s]+`` on the ``regex`` engine), and hashes
every 1..n-gram (tokens joined by one space) into ``int(sha256(gram), 16) % num_buckets``. We
keep that featurization bit for bit, so bucket counts and weights agree, but vectorize it: grams
are mapped to buckets through a bounded memo (word frequencies are Zipfian, so most lookups
hit and skip SHA-256), and a batch of documents becomes one flat ``int32`` array of bucket ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import regex

WORD_PUNCT = regex.compile(r"\w+|[^\w\s]+", regex.UNICODE | regex.MULTILINE | regex.DOTALL)


def hash_bucket(gram: str, num_buckets: int) -> int:
    """The reference's bucket of one n-gram: SHA-256 as a big-endian integer, modulo buckets."""
    return int.from_bytes(hashlib.sha256(gram.encode("utf-8")).digest(), "big") % num_buckets


class _Memo(dict[Any, int]):
    """A bounded gram -> bucket memo: emptied when full so that memory stays bounded."""

    def __init__(self, num_buckets: int, max_size: int) -> None:
        super().__init__()
        self.num_buckets = num_buckets
        self.max_size = max_size

    def _store(self, key: Any, gram: str) -> int:
        if len(self) >= self.max_size:
            self.clear()
        bucket = self[key] = hash_bucket(gram, self.num_buckets)
        return bucket


class _TokenMemo(_Memo):
    """Keyed by the unigram itself."""

    def __missing__(self, token: str) -> int:
        return self._store(token, token)


class _TupleMemo(_Memo):
    """Keyed by the n-gram's token tuple, so that a hit builds no joined string."""

    def __missing__(self, gram: tuple[str, ...]) -> int:
        return self._store(gram, " ".join(gram))


@dataclass(frozen=True)
class HashedBatch:
    """Bucket ids of a batch of documents, flattened: document ``i`` owns
    ``ids[offsets[i]:offsets[i + 1]]``; ``lengths[i]`` is its number of word tokens."""

    ids: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray

    def bucket_counts(self, num_buckets: int) -> np.ndarray:
        """Summed bucket counts of the whole batch (int64, length ``num_buckets``)."""
        return np.bincount(self.ids, minlength=num_buckets).astype(np.int64)

    def document_sums(self, values: np.ndarray) -> np.ndarray:
        """Per document, the sum of ``values`` over its bucket ids: ``z_i · values``."""
        cumulative = np.concatenate([[0.0], np.cumsum(values[self.ids], dtype=np.float64)])
        return cumulative[self.offsets[1:]] - cumulative[self.offsets[:-1]]


class NgramHasher:
    """Lowercase, word-punctuation tokenize, hash 1..``ngrams``-grams into ``num_buckets``."""

    def __init__(self, ngrams: int = 2, num_buckets: int = 10_000, memo_size: int = 2_000_000):
        if ngrams < 1 or num_buckets < 1:
            raise ValueError("ngrams and num_buckets must be positive")
        self.ngrams = ngrams
        self.num_buckets = num_buckets
        self._tokens = _TokenMemo(num_buckets, memo_size)
        self._tuples = _TupleMemo(num_buckets, memo_size)

    def tokenize(self, text: str) -> list[str]:
        return WORD_PUNCT.findall(text.lower())

    def hash_batch(self, texts: Iterable[str]) -> HashedBatch:
        """Bucket ids of every document: its unigrams, then bigrams, ... up to ``ngrams``."""
        token_bucket = self._tokens.__getitem__
        tuple_bucket = self._tuples.__getitem__
        ids: list[int] = []
        offsets = [0]
        lengths = []
        for text in texts:
            tokens = self.tokenize(text)
            ids.extend(map(token_bucket, tokens))
            for n in range(2, self.ngrams + 1):
                ids.extend(map(tuple_bucket, zip(*(tokens[i:] for i in range(n)), strict=False)))
            offsets.append(len(ids))
            lengths.append(len(tokens))
        return HashedBatch(
            ids=np.asarray(ids, dtype=np.int32),
            offsets=np.asarray(offsets, dtype=np.int64),
            lengths=np.asarray(lengths, dtype=np.int64),
        )
