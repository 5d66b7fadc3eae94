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
from itertools import chain
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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
    """Bucket ids of a batch of documents, flattened: ``ids[k]`` belongs to document
    ``doc_of[k]``; ``lengths[i]`` is document ``i``'s number of word tokens."""

    ids: np.ndarray
    doc_of: np.ndarray
    lengths: np.ndarray

    def bucket_counts(self, num_buckets: int) -> np.ndarray:
        """Summed bucket counts of the whole batch (int64, length ``num_buckets``)."""
        return np.bincount(self.ids, minlength=num_buckets).astype(np.int64)

    def document_sums(self, values: np.ndarray) -> np.ndarray:
        """Per document, the sum of ``values`` over its bucket ids: ``z_i · values``."""
        return np.bincount(self.doc_of, weights=values[self.ids], minlength=len(self.lengths))


class NgramHasher:
    """Lowercase, word-punctuation tokenize, hash 1..``ngrams``-grams into ``num_buckets``.

    A batch is tokenized per document, then its tokens are dictionary-encoded (Arrow) and its
    n-grams deduplicated as rows of token codes (numpy), so Python touches each distinct gram
    of a batch once; the memos keep buckets across batches.
    """

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
        """Bucket ids of every unigram, bigram, ... up to ``ngrams`` of every document."""
        tokenized = [self.tokenize(text) for text in texts]
        lengths = np.fromiter(map(len, tokenized), dtype=np.int64, count=len(tokenized))
        doc_of_token = np.repeat(np.arange(len(tokenized)), lengths)
        encoded = pc.dictionary_encode(pa.array(chain.from_iterable(tokenized), pa.string()))
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        vocab = encoded.dictionary.to_pylist()
        vocab_buckets = np.fromiter(map(self._tokens.__getitem__, vocab), np.int64, len(vocab))
        ids = [vocab_buckets[codes]]
        doc_of = [doc_of_token]
        ends = np.cumsum(lengths)[doc_of_token]
        gram_codes = codes  # code of the (n-1)-gram starting at each position
        for n in range(2, self.ngrams + 1):
            starts = np.nonzero(ends - np.arange(len(codes)) >= n)[0]
            pairs = gram_codes[starts] * len(vocab) + codes[starts + n - 1]
            unique_pairs, inverse = np.unique(pairs, return_inverse=True)
            gram_codes = np.zeros(len(codes), dtype=np.int64)
            gram_codes[starts] = inverse
            firsts = np.zeros(len(unique_pairs), dtype=np.int64)
            firsts[inverse] = starts
            grams = (tuple(vocab[c] for c in codes[i : i + n].tolist()) for i in firsts.tolist())
            buckets = np.fromiter(map(self._tuples.__getitem__, grams), np.int64, len(firsts))
            ids.append(buckets[inverse])
            doc_of.append(doc_of_token[starts])
        return HashedBatch(ids=np.concatenate(ids), doc_of=np.concatenate(doc_of), lengths=lengths)
