"""DSIR featurization + weighting: ours vs the reference ``data-selection`` (num_proc=1).

Corpus: documents built from real paragraphs of ../shared/data (Pile sample, news, WikiBio),
each document 3-8 paragraphs drawn with a fixed seed; target: WikiBio + Shakespeare
paragraphs. Both sides fit the target and raw bag-of-hashed-ngram models (10k buckets, uni +
bigrams, wordpunct) and compute every raw document's log-importance weight.

    .venv/bin/python bench/dsir.py [--docs 10000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from data_selection import HashedNgramDSIR
from scipy.stats import spearmanr

from llmstack_dagster.core.curation.selection.dsir import (
    DSIRConfig,
    fit_bucket_counts,
    log_importance_ratio,
    log_importance_weights,
)

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pretrain"


def _jsonl(path: Path, field: str) -> list[str]:
    return [json.loads(line)[field] for line in path.read_text().splitlines() if line.strip()]


def _paragraphs(texts: list[str]) -> list[str]:
    return [p for t in texts for p in t.split("\n") if len(p.split()) >= 5]


def build_corpus(num_docs: int, seed: int = 0) -> tuple[list[str], list[str]]:
    raw_pool = _paragraphs(
        _jsonl(DATA / "mixed" / "pile_sample.jsonl", "contents")
        + _jsonl(DATA / "news" / "xsum.jsonl", "text")
        + _jsonl(DATA / "news" / "cnn_dailymail.jsonl", "text")
    )
    target = _paragraphs(_jsonl(DATA / "wiki" / "wiki_bio.jsonl", "text")) + _paragraphs(
        [p.read_text() for p in sorted((DATA / "books").glob("*.txt"))]
    )
    rng = np.random.default_rng(seed)
    raw = [
        "\n".join(raw_pool[i] for i in rng.integers(len(raw_pool), size=rng.integers(3, 9)))
        for _ in range(num_docs)
    ]
    return raw, target


def run_ours(raw: list[str], target: list[str]) -> tuple[np.ndarray, dict[str, float]]:
    config = DSIRConfig()
    hasher = config.hasher()

    def batches(texts: list[str]) -> Iterator[list[str]]:
        size = config.batch_size
        return (texts[i : i + size] for i in range(0, len(texts), size))

    start = time.perf_counter()
    target_counts = fit_bucket_counts(batches(target), hasher)
    raw_counts = fit_bucket_counts(batches(raw), hasher, config.raw_fit_max_ngrams)
    fitted = time.perf_counter()
    ratio = log_importance_ratio(target_counts, raw_counts, config.epsilon)
    weights, _ = log_importance_weights(batches(raw), hasher, ratio)
    done = time.perf_counter()
    return weights, {"fit": fitted - start, "weights": done - fitted}


def run_reference(raw: list[str], target: list[str]) -> tuple[np.ndarray, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        for name, texts in (("raw", raw), ("target", target)):
            with open(Path(tmp) / f"{name}.jsonl", "w") as handle:
                handle.writelines(json.dumps({"text": t}) + "\n" for t in texts)
        dsir = HashedNgramDSIR(
            [f"{tmp}/raw.jsonl"], [f"{tmp}/target.jsonl"], cache_dir=f"{tmp}/cache", num_proc=1
        )
        start = time.perf_counter()
        dsir.fit_importance_estimator(num_tokens_to_fit="auto")
        fitted = time.perf_counter()
        dsir.compute_importance_weights()
        done = time.perf_counter()
        weights = np.load(f"{tmp}/cache/log_importance_weights/0.npy")
    return weights, {"fit": fitted - start, "weights": done - fitted}


RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=10_000)
    args = parser.parse_args()
    raw, target = build_corpus(args.docs)
    words = sum(len(t.split()) for t in raw)
    print(f"raw: {len(raw)} docs, {words:,} words; target: {len(target)} paragraphs")
    ours, ours_t = run_ours(raw, target)
    ref, ref_t = run_reference(raw, target)
    ours_total, ref_total = sum(ours_t.values()), sum(ref_t.values())
    print(f"{'phase':<10}{'ours s':>10}{'reference s':>14}{'speed-up':>10}")
    for phase in ("fit", "weights"):
        print(
            f"{phase:<10}{ours_t[phase]:>10.2f}{ref_t[phase]:>14.2f}"
            f"{ref_t[phase] / ours_t[phase]:>9.1f}x"
        )
    print(f"{'total':<10}{ours_total:>10.2f}{ref_total:>14.2f}{ref_total / ours_total:>9.1f}x")
    print(
        f"raw words/s: ours {2 * words / ours_total:,.0f}, reference {2 * words / ref_total:,.0f}"
        " (raw text is featurized twice)"
    )
    rho, max_diff = float(spearmanr(ours, ref).statistic), float(np.max(np.abs(ours - ref)))
    print(f"Spearman {rho:.6f}, max |diff| {max_diff:.2e}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {
        "docs": len(raw),
        "words": words,
        "target_paragraphs": len(target),
        "ours_s": ours_t,
        "reference_s": ref_t,
        "speedup_total": ref_total / ours_total,
        "spearman": rho,
        "max_abs_diff": max_diff,
    }
    (RESULTS / f"dsir-{len(raw)}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
