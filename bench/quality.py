"""Quality scoring throughput (docs/s on one core): the whole ``quality_scored`` stage with its
default configuration and each component, side by side with datatrove's heuristic filters on the
same documents; agreement with datatrove's Gopher filters; agreement of the fast attribute
classifiers with the MiniLM path.

Corpus: every real document of ../shared/data's Pile sample, news, CCNet web and WikiBio files
(about 1,100 documents of 40 B - 65 KB), unchanged. Reference LM and attribute classifiers:
trained with our runner on WikiBio + Shakespeare against the Pile sample (order 5). Domain
accuracy against known labels: documents whose source names their category (Pile's Github,
PubMed, ArXiv, DM Mathematics and FreeLaw subsets, CPython sources, news, Shakespeare). One
thread for torch and BLAS.

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

import numpy as np  # noqa: E402
import torch  # noqa: E402
from datatrove.data import Document  # noqa: E402
from datatrove.pipeline.filters import (  # noqa: E402
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from datatrove.utils.word_tokenizers import load_word_tokenizer  # noqa: E402

from llmstack_dagster.core.curation.quality import gopher, heuristics  # noqa: E402
from llmstack_dagster.core.curation.quality.attributes.domain_classifier import (  # noqa: E402
    DomainClassifierConfig,
    load_domain_classifier,
)
from llmstack_dagster.core.curation.quality.attributes.features import (  # noqa: E402
    DocumentFeatures,
)
from llmstack_dagster.core.curation.quality.attributes.quality_classifier import (  # noqa: E402
    QualityClassifierConfig,
    load_quality_classifier,
)
from llmstack_dagster.core.curation.quality.attributes.toxicity import (  # noqa: E402
    ToxicityConfig,
    load_toxicity_scorer,
)
from llmstack_dagster.core.curation.quality.attributes.training import (  # noqa: E402
    TrainedAttributes,
    load_trained_attributes,
)
from llmstack_dagster.core.curation.quality.document_scores import score_texts  # noqa: E402
from llmstack_dagster.core.curation.quality.reference_lm import (  # noqa: E402
    ReferenceLMConfig,
    load_perplexity_model,
    reference_lm_of,
    train_reference_lm,
)
from llmstack_dagster.core.curation.quality.rules import failed_rules  # noqa: E402
from llmstack_dagster.core.curation.quality.scoring import QualityConfig, load_scorers  # noqa: E402
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


def datatrove_filters(texts: list[str]) -> float:
    """Docs/s of datatrove's Gopher, C4 and FineWeb heuristic filters, every filter on every
    document (as our stage computes every metric of every document)."""
    filters = [GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(),
               FineWebQualityFilter()]  # fmt: skip
    docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
    start = time.perf_counter()
    for doc in docs:
        for f in filters:
            f.filter(doc)
    return len(docs) / (time.perf_counter() - start)


PILE_CATEGORIES = {"Github": "Computers_and_Electronics", "PubMed Abstracts": "Health",
                   "PubMed Central": "Health", "ArXiv": "Science", "DM Mathematics": "Science",
                   "FreeLaw": "Law_and_Government"}  # fmt: skip


def labelled_domains() -> tuple[list[str], list[str]]:
    """(texts, category) for every other document whose source names its category."""
    rows = [json.loads(line) for line in (DATA / "mixed/pile_sample.jsonl").open()]
    pairs = [(r["contents"], PILE_CATEGORIES[r["metadata"]["pile_set_name"]]) for r in rows
             if r["metadata"]["pile_set_name"] in PILE_CATEGORIES]  # fmt: skip
    pairs += [(t, "Computers_and_Electronics") for t in _jsonl(DATA / "code/code_sample.jsonl",
                                                               "text")]  # fmt: skip
    pairs += [(t, "News") for name in ("cnn_dailymail", "xsum")
              for t in _jsonl(DATA / f"news/{name}.jsonl", "text")]  # fmt: skip
    pairs += [(p.read_text()[i : i + 4000], "Books_and_Literature")
              for p in sorted((DATA / "books").glob("*.txt")) for i in range(0, 80_000, 4000)]
    return [t for t, _ in pairs[::2]], [c for _, c in pairs[::2]]


def domain_accuracy(trained: TrainedAttributes) -> dict[str, float]:
    """Accuracy against known categories of the pipeline (hashed) and zero-shot MiniLM domain
    classifiers, and their agreement, on documents neither was trained on."""
    texts, truth = labelled_domains()
    features = DocumentFeatures(texts)
    fast, _ = load_domain_classifier(DomainClassifierConfig(), trained.domain)(features)
    minilm, _ = load_domain_classifier(DomainClassifierConfig(backend="zero_shot"))(features)
    fast_, minilm_, truth_ = np.array(fast), np.array(minilm), np.array(truth)
    return {
        "docs": len(texts),
        "pipeline_hashed_accuracy": float(np.mean(fast_ == truth_)),
        "zero_shot_minilm_accuracy": float(np.mean(minilm_ == truth_)),
        "agreement": float(np.mean(fast_ == minilm_)),
    }


def attribute_rates(trained: TrainedAttributes, texts: list[str]) -> dict[str, float]:
    """Docs/s of the attribute classifiers, each feature kind computed once per batch."""
    quality = load_quality_classifier(QualityClassifierConfig(), trained.quality, "hashed")
    domain = load_domain_classifier(DomainClassifierConfig(), trained.domain)
    zero_shot = load_domain_classifier(DomainClassifierConfig(backend="zero_shot"))

    def hashed_both(batch: list[str]) -> None:
        features = DocumentFeatures(batch)
        quality(features), domain(features)

    sample = texts[:300]
    return {
        "quality_pipeline_hashed": rate(lambda b: quality(DocumentFeatures(b)), texts, 256),
        "domain_pipeline_hashed": rate(lambda b: domain(DocumentFeatures(b)), texts, 256),
        "quality+domain_hashed_shared_features": rate(hashed_both, texts, 256),
        # the one MiniLM pass; a MiniLM quality head reads the same embeddings at no cost
        "minilm_embedding+zero_shot_domain": rate(lambda b: zero_shot(DocumentFeatures(b)),
                                                  sample, 64),  # fmt: skip
        "toxicity_profanity_check": rate(load_toxicity_scorer(ToxicityConfig()), texts, 256),
    }


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
        trained = load_trained_attributes(storage.read_bytes(ref.classifier_path))
        per.update(attribute_rates(trained, texts))
        scorers = load_scorers(storage, ref, QualityConfig(), tmp)
        batch = QualityConfig().batch_size
        score_texts(texts[:8], False, scorers)  # load what loads lazily
        # first pass: per-word caches (word splitting, alphabetic words, normalization tables)
        # fill; a worker scoring a shard of thousands of documents runs warm, as the second pass
        per["whole_stage_first_pass"] = rate(lambda b: score_texts(b, False, scorers), texts,
                                             batch)  # fmt: skip
        per["whole_stage_default_config"] = rate(lambda b: score_texts(b, False, scorers), texts,
                                                 batch)  # fmt: skip
        per["datatrove_gopher+c4+fineweb_filters"] = datatrove_filters(texts)
        results["attribute_agreement"] = {
            "quality_heldout": ref.classifier_metrics,
            "domain_known_labels": domain_accuracy(trained),
        }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=float))
    print(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
