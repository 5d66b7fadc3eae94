"""Quality scoring throughput (docs/s on one core) and agreement with datatrove's Gopher filters.

Corpus: every real document of ../shared/data's Pile sample, news, CCNet web and WikiBio files
(about 1,100 documents of 40 B - 65 KB), unchanged. Reference LM for the KenLM timing: trained
with our runner on WikiBio + Shakespeare (order 5). One thread for torch and BLAS.

    .bench-venv/bin/python bench/quality.py        # needs datatrove + spaCy (.bench-venv)
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from datatrove.data import Document  # noqa: E402
from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter  # noqa: E402
from datatrove.utils.word_tokenizers import load_word_tokenizer  # noqa: E402

from llmstack_dagster.core.curation.quality import gopher, heuristics  # noqa: E402
from llmstack_dagster.core.curation.quality.attributes.domain_classifier import (  # noqa: E402
    DomainClassifierConfig,
    load_domain_classifier,
)
from llmstack_dagster.core.curation.quality.attributes.quality_classifier import (  # noqa: E402
    QualityClassifierConfig,
    load_quality_classifier,
)
from llmstack_dagster.core.curation.quality.attributes.toxicity import (  # noqa: E402
    ToxicityConfig,
    load_toxicity_scorer,
)
from llmstack_dagster.core.curation.quality.reference_lm import (  # noqa: E402
    ReferenceLMConfig,
    load_perplexity_model,
    reference_lm_of,
    train_reference_lm,
)
from llmstack_dagster.core.curation.quality.rules import failed_rules  # noqa: E402
from llmstack_dagster.core.curation.quality.words import gopher_words  # noqa: E402
from llmstack_dagster.core.schema import DOCUMENT_SCHEMA, make_document  # noqa: E402
from llmstack_dagster.core.storage import ShardManifest, ShardWriter, Storage  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pretrain"
RESULTS = Path(__file__).resolve().parent / "results" / "quality.json"
torch.set_num_threads(1)


def _jsonl(path: Path, field: str) -> list[str]:
    return [json.loads(line)[field] for line in path.read_text().splitlines() if line.strip()]


def corpus() -> list[str]:
    texts = _jsonl(DATA / "mixed/pile_sample.jsonl", "contents")
    texts += _jsonl(DATA / "news/cnn_dailymail.jsonl", "text")
    texts += _jsonl(DATA / "news/xsum.jsonl", "text")
    texts += [
        t for p in sorted((DATA / "web").glob("cc_en_head-*.jsonl")) for t in _jsonl(p, "text")
    ]
    return texts + _jsonl(DATA / "wiki/wiki_bio.jsonl", "text")


def rate(fn: Callable[[list[str]], object], texts: list[str], batch: int = 1) -> float:
    """Documents per second of ``fn`` over ``texts`` in batches."""
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        fn(texts[i : i + batch])
    return len(texts) / (time.perf_counter() - start)


def _docs(storage: Storage, domain: str, texts: list[str]) -> ShardManifest:
    writer = ShardWriter(storage, f"in/{domain}", DOCUMENT_SCHEMA)
    created = datetime(2024, 1, 1, tzinfo=UTC)
    for i, text in enumerate(texts):
        writer.write_row(make_document(id=f"{domain}/{i}", text=text, domain=domain,
                                       source=domain, created=created))  # fmt: skip
    return ShardManifest(asset="in", partition=domain, shards=writer.close())


def ours_quality(text: str) -> bool:
    rules = heuristics.HeuristicsConfig().rules()
    rules = [r for r in rules if r.name in ("word_count", "mean_word_length")]
    metrics = {
        **heuristics.heuristic_metrics(text),
        **gopher.quality_metrics(text, gopher_words(text)),
    }
    return not failed_rules(metrics, rules + gopher.GopherConfig().quality_rules())


def ours_gopher_rules(text: str) -> bool:
    """Gopher's own quality rules, without the word-count and word-length rules that the
    pipeline takes from NeMo Curator (whitespace words) rather than from Gopher (spaCy words)."""
    metrics = gopher.quality_metrics(text, gopher_words(text))
    return not failed_rules(metrics, gopher.GopherConfig().quality_rules())


def ours_repetition(text: str) -> bool:
    metrics = gopher.repetition_metrics(text, gopher_words(text))
    return not failed_rules(metrics, gopher.GopherConfig().repetition_rules())


def compare_gopher(texts: list[str]) -> dict[str, dict[str, float]]:
    out = {}
    no_length_rules = GopherQualityFilter(min_doc_words=None, max_doc_words=None,
                                          min_avg_word_length=None, max_avg_word_length=None)
    pairs = (("quality", ours_quality, GopherQualityFilter()),
             ("quality_gopher_rules_only", ours_gopher_rules, no_length_rules),
             ("repetition", ours_repetition, GopherRepetitionFilter()))  # fmt: skip
    load_word_tokenizer("en").word_tokenize("warm up spaCy")
    for name, ours, theirs in pairs:
        docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
        start = time.perf_counter()
        mine = [ours(t) for t in texts]
        t_ours = time.perf_counter() - start
        start = time.perf_counter()
        ref = [theirs.filter(d) is True for d in docs]
        t_ref = time.perf_counter() - start
        out[name] = {
            "agreement": sum(a == b for a, b in zip(mine, ref, strict=True)) / len(texts),
            "ours_docs_per_s": len(texts) / t_ours,
            "datatrove_docs_per_s": len(texts) / t_ref,
            "speedup": t_ref / t_ours,
            "ours_keep": sum(mine) / len(texts),
            "datatrove_keep": sum(ref) / len(texts),
        }
    return out


def main() -> None:
    texts = corpus()
    results: dict[str, object] = {"docs": len(texts), "chars": sum(map(len, texts))}
    results["gopher_vs_datatrove"] = compare_gopher(texts)
    results["docs_per_s_one_core"] = per = {}
    per["nemo_heuristics"] = rate(lambda b: heuristics.heuristic_metrics(b[0]), texts)
    per["gopher_quality+repetition"] = rate(
        lambda b: (w := gopher_words(b[0]), gopher.quality_metrics(b[0], w),
                   gopher.repetition_metrics(b[0], w)), texts)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        storage = Storage(tmp)
        wiki = _jsonl(DATA / "wiki/wiki_bio.jsonl", "text")
        books = [p.read_text() for p in sorted((DATA / "books").glob("*.txt"))]
        web = _jsonl(DATA / "mixed/pile_sample.jsonl", "contents")
        config = ReferenceLMConfig(vocab_size=8000, reference_sample_docs=200, web_sample_docs=200)
        start = time.perf_counter()
        manifest = train_reference_lm(storage, {"wiki": _docs(storage, "wiki", wiki),
                                                "books": _docs(storage, "books", books)},
                                      _docs(storage, "web", web), config)  # fmt: skip
        results["reference_lm_train_s"] = time.perf_counter() - start
        ref = reference_lm_of(manifest)
        results["reference_lm"] = {"order": ref.order, "bytes": ref.model_bytes,
                                   "vocab": ref.vocab_size, "ngrams": ref.ngram_counts}  # fmt: skip
        model = load_perplexity_model(storage, ref, tmp)
        per["kenlm_perplexity"] = rate(lambda b: model.perplexity(b[0]), texts)
        quality = load_quality_classifier(QualityClassifierConfig(),
                                          storage.read_bytes(ref.classifier_path))  # fmt: skip
        sample = texts[:300]
        per["quality_classifier_minilm"] = rate(quality, sample, batch=64)
        per["toxicity_profanity_check"] = rate(load_toxicity_scorer(ToxicityConfig()), texts, 256)
        per["domain_zero_shot_minilm"] = rate(load_domain_classifier(DomainClassifierConfig()),
                                              sample, batch=64)  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=float))
    print(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
