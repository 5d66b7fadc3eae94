"""CCNet perplexity as released (``scoring: document``) against line scoring (``scoring:
line``) on held-out real documents, with the reference LM the pipeline trains.

The reference LM is trained as the ``reference_lm`` asset trains it (order 5, SentencePiece
unigram) on the even-indexed half of WikiBio and of 80-line Shakespeare chunks, with the even
half of the web sample (CCNet head pages, the Pile's Pile-CC and OpenWebText2) for the bucket
cutoffs; once per scoring mode, so each mode gets the cutoffs it computes. The odd halves of
web, news (CNN/DailyMail, XSum), WikiBio and books are held out and scored in both modes.
Reported: the relative difference |document - line| / line (median and quartiles), which mode
scores higher, the share above the seed's 5000 threshold, bucket agreement, and the Spearman
correlation of each mode with CCNet's own released scores of the 20 head pages (their
``metadata.perplexity``, from CCNet's Wikipedia LM, so only the ranking is comparable).

    .venv/bin/python bench/ccnet_perplexity.py
"""

from __future__ import annotations

import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from language_id import SHARED, read_jsonl
from scipy.stats import spearmanr

from llmstack_dagster.core.curation.quality.perplexity import ScoringMode, ccnet_bucket
from llmstack_dagster.core.curation.quality.reference_lm import (
    ReferenceLMConfig,
    load_perplexity_model,
    reference_lm_of,
    train_reference_lm,
)
from llmstack_dagster.core.schema import DOCUMENT_SCHEMA, make_document
from llmstack_dagster.core.storage import ShardManifest, ShardWriter, Storage

RESULTS = Path(__file__).parent / "results"
MAX_PERPLEXITY = 5000.0
CONFIG = ReferenceLMConfig(vocab_size=8000, reference_sample_docs=1000, web_sample_docs=1000)


def _books() -> list[str]:
    chunks = []
    for book in sorted((SHARED / "books").glob("*.txt")):
        lines = book.read_text(encoding="utf-8").splitlines()
        chunks += ["\n".join(lines[i : i + 80]).strip() for i in range(0, len(lines), 80)]
    return [c for c in chunks if c]


def _web() -> tuple[list[str], list[float]]:
    """Web texts, and CCNet's own perplexity of the head pages (which come first)."""
    head = [json.loads(line) for p in sorted((SHARED / "web").glob("cc_en_head-*.jsonl"))
            for line in p.read_text().splitlines() if line.strip()]  # fmt: skip
    pile = [json.loads(line) for line in
            (SHARED / "mixed/pile_sample.jsonl").read_text().splitlines()]  # fmt: skip
    texts = [r["text"] for r in head]
    texts += [r["contents"] for r in pile
              if r["metadata"]["pile_set_name"] in ("Pile-CC", "OpenWebText2")]  # fmt: skip
    return texts, [float(r["metadata"]["perplexity"]) for r in head]


def _write(storage: Storage, domain: str, texts: list[str]) -> ShardManifest:
    writer = ShardWriter(storage, f"bench/{domain}", DOCUMENT_SCHEMA)
    created = datetime(2024, 1, 1, tzinfo=UTC)
    for i, text in enumerate(texts):
        writer.write_row(make_document(id=f"{domain}/{i}", text=text, domain=domain,
                                       source=domain, created=created))  # fmt: skip
    return ShardManifest(asset="bench", partition=domain, shards=writer.close())


def _score(storage: Storage, scoring: ScoringMode, train: dict[str, list[str]],
           held_out: list[str]) -> tuple[np.ndarray, tuple[float, float], float]:  # fmt: skip
    reference = {d: _write(storage, f"{scoring}-{d}", train[d]) for d in ("wiki", "books")}
    web = _write(storage, f"{scoring}-web", train["web"])
    config = CONFIG.model_copy(update={"scoring": scoring})
    ref = reference_lm_of(train_reference_lm(storage, reference, web, config))
    model = load_perplexity_model(storage, ref, "/nonexistent")
    start = time.perf_counter()
    scores = np.array([model.perplexity(t) or np.nan for t in held_out])
    return scores, ref.bucket_cutoffs, len(held_out) / (time.perf_counter() - start)


def main() -> None:
    web, ccnet_scores = _web()
    wiki = read_jsonl(SHARED / "wiki/wiki_bio.jsonl", "text")
    books = _books()
    news = read_jsonl(SHARED / "news/cnn_dailymail.jsonl", "text")
    news += read_jsonl(SHARED / "news/xsum.jsonl", "text")
    train = {"wiki": wiki[::2], "books": books[::2], "web": web[::2]}
    held = {"web": web[1::2], "news": news[1::2], "wiki": wiki[1::2], "books": books[1::2]}
    held_out = [t for texts in held.values() for t in texts]
    head_pages = web[: len(ccnet_scores)]
    results, cutoffs, speed = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        storage = Storage(tmp)
        for mode in ("document", "line"):
            results[mode], cutoffs[mode], speed[mode] = _score(
                storage, mode, train, held_out + head_pages
            )
    n = len(held_out)
    document, line = results["document"][:n], results["line"][:n]
    ratio = np.abs(document - line) / line
    buckets = {m: [ccnet_bucket(p, cutoffs[m]) for p in results[m][:n]] for m in results}
    per_domain, start = {}, 0
    for domain, texts in held.items():
        part = slice(start, start + len(texts))
        per_domain[domain] = {"documents": len(texts),
                              "median_relative_difference": float(np.median(ratio[part])),
                              "median_document": float(np.median(document[part])),
                              "median_line": float(np.median(line[part]))}  # fmt: skip
        start += len(texts)
    summary = {
        "held_out_documents": n,
        "median_relative_difference": float(np.median(ratio)),
        "relative_difference_quartiles": [float(q) for q in np.percentile(ratio, [25, 75])],
        "document_higher_share": float(np.mean(document > line)),
        "median_document": float(np.median(document)),
        "median_line": float(np.median(line)),
        "above_5000_share": {m: float(np.mean(results[m][:n] > MAX_PERPLEXITY))
                             for m in results},  # fmt: skip
        "bucket_cutoffs": {m: list(c) for m, c in cutoffs.items()},
        "bucket_agreement": float(np.mean([a == b for a, b in zip(*buckets.values(),
                                                                  strict=True)])),  # fmt: skip
        "spearman_with_ccnet_released_head_pages": {
            m: float(spearmanr(results[m][n:], ccnet_scores).statistic) for m in results
        },
        "docs_per_s_one_core": speed,
        "per_domain": per_domain,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ccnet_perplexity.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
