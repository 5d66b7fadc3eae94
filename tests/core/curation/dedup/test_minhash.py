import numpy as np
import pytest

from llmstack_dagster.core.curation.dedup.config import DedupConfig
from llmstack_dagster.core.curation.dedup.minhash import (
    EMPTY,
    MinHasher,
    estimated_jaccard,
    shingle_jaccard,
)
from llmstack_dagster.core.curation.dedup.synthetic import load_texts
from llmstack_dagster.core.curation.dedup.text import fuzzy_words


def reference_shingles(text: str, config: DedupConfig) -> set[tuple]:
    words = fuzzy_words(text)
    tokens: list = list(" ".join(words)) if config.shingle == "char" else words
    if not tokens:
        return set()
    n = min(config.ngram, len(tokens))
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def reference_jaccard(a: str, b: str, config: DedupConfig) -> float:
    sa, sb = reference_shingles(a, config), reference_shingles(b, config)
    return len(sa & sb) / len(sa | sb)


@pytest.fixture(scope="module")
def texts(shared_data) -> list[str]:
    return load_texts(shared_data, min_words=30)[:60]


@pytest.mark.parametrize("config", [DedupConfig(), DedupConfig.nemo_curator()])
def test_kernel_shingles_match_reference(texts: list[str], config: DedupConfig) -> None:
    sample = texts[:20] + ["Tiny text", "Ünïcödé wörds, ÀND punctuation!!", "x"]
    sets = MinHasher(config).shingle_sets(sample)
    for text, hashed in zip(sample, sets, strict=True):
        assert hashed.size == len(reference_shingles(text, config))
    edited = [t.replace(" the ", " a ") for t in sample]
    edited_sets = MinHasher(config).shingle_sets(edited)
    for i in range(len(sample)):
        want = reference_jaccard(sample[i], edited[i], config)
        assert shingle_jaccard(sets[i], edited_sets[i]) == pytest.approx(want)


def test_signature_estimates_jaccard(texts: list[str]) -> None:
    config = DedupConfig()
    hasher = MinHasher(config)
    rng = np.random.default_rng(1)
    errors = []
    for text in texts[:40]:
        words = text.split(" ")
        for i in np.flatnonzero(rng.random(len(words)) < 0.03):
            words[i] = "zzz"
        other = " ".join(words)
        truth = reference_jaccard(text, other, config)
        est = estimated_jaccard(*hasher.signatures([text, other]))
        errors.append(est - truth)
    errors = np.array(errors)
    # 112 permutations: standard error sqrt(J(1-J)/112) <= 0.047
    assert abs(errors.mean()) < 0.03
    assert np.abs(errors).max() < 0.2


def test_signatures_are_deterministic_and_seeded(texts: list[str]) -> None:
    a = MinHasher(DedupConfig()).signatures(texts[:5])
    b = MinHasher(DedupConfig()).signatures(texts[:5])
    c = MinHasher(DedupConfig(seed=7)).signatures(texts[:5])
    assert a.shape == (5, 112) and a.dtype == np.uint32
    assert (a == b).all()
    assert (a != c).mean() > 0.9


def test_empty_text_has_no_shingles() -> None:
    sig, counts = MinHasher(DedupConfig()).signatures_and_counts(["", "...  !!", "word"])
    assert counts.tolist() == [0, 0, 1]
    assert (sig[:2] == EMPTY).all()
    assert not (sig[2] == EMPTY).all()


def test_unrelated_texts_estimate_near_zero(texts: list[str]) -> None:
    sig = MinHasher(DedupConfig()).signatures(texts[:30])
    est = estimated_jaccard(sig[:-1], sig[1:])
    assert est.max() < 0.2
