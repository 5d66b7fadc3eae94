"""The ``reference_lm`` runner: CCNet-normalize a high-quality reference corpus, train
SentencePiece on it, estimate a KenLM n-gram model (lmplz, build_binary), derive the CCNet bucket
cutoffs and train the pipeline's quality classifier (reference vs raw web)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import sentencepiece as spm
from pydantic import BaseModel, Field

from llmstack_dagster.core.curation.quality.attributes.training import (
    AttributeTrainingConfig,
    train_attribute_classifiers,
)
from llmstack_dagster.core.curation.quality.kenlm_tools import (
    arpa_ngram_counts,
    build_binary,
    run_lmplz,
)
from llmstack_dagster.core.curation.quality.normalize import normalized_lines
from llmstack_dagster.core.curation.quality.perplexity import PerplexityModel, ScoringMode
from llmstack_dagster.core.curation.quality.sampling import Reservoir, iter_texts
from llmstack_dagster.core.storage import (
    OutputVersion,
    ShardManifest,
    Storage,
    build_version,
    content_version,
)

ASSET = "reference_lm"
CODE_VERSION = "2"  # 2: CCNet document scoring (rounded) by default


class ReferenceLMConfig(BaseModel):
    """Defaults: CCNet (Wenzek et al. 2020) order-5 KenLM on SentencePiece pieces."""

    reference_domains: list[str] = Field(default_factory=lambda: ["wiki", "books"])
    order: int = 5
    vocab_size: int = 32_000  # upper bound; SentencePiece shrinks it for small corpora
    sp_sentence_sample: int = 2_000_000
    memory: str = "20%"  # lmplz -S
    discount_fallback: bool = True
    bucket_percentiles: tuple[float, float] = (30.0, 60.0)
    bucket_source: Literal["web", "reference"] = "web"
    # CCNet as released scores the normalized document as one line; "line" scores each line.
    # The cutoffs are computed in this mode and quality_scored scores in the same one.
    scoring: ScoringMode = "document"
    web_sample_docs: int = 5_000
    reference_sample_docs: int = 5_000
    classifier: AttributeTrainingConfig = Field(default_factory=AttributeTrainingConfig)
    seed: int = 0


class ReferenceLM(BaseModel):
    """What ``reference_lm`` wrote (storage-relative paths) and what it measured."""

    kenlm_path: str
    sp_path: str
    classifier_path: str
    order: int
    vocab_size: int
    model_bytes: int
    ngram_counts: dict[int, int]
    bucket_cutoffs: tuple[float, float]
    bucket_source: str
    scoring: ScoringMode = "line"  # records written before the option scored lines
    reference_docs: int
    reference_lines: int
    reference_perplexity_median: float
    web_perplexity_median: float
    classifier_metrics: dict[str, float]


def _write_normalized(
    storage: Storage, manifests: list[ShardManifest], path: Path, sample: Reservoir
) -> tuple[int, int]:
    """Stream the reference docs to ``path`` as normalized lines; returns (docs, lines)."""
    docs = lines = 0
    with open(path, "w", encoding="utf-8") as out:
        for text in iter_texts(storage, manifests):
            docs += 1
            sample.add(text)
            for line in normalized_lines(text):
                out.write(line + "\n")
                lines += 1
    return docs, lines


def _train_sentencepiece(corpus: Path, prefix: Path, config: ReferenceLMConfig) -> int:
    spm.set_random_generator_seed(config.seed)
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(prefix),
        vocab_size=config.vocab_size,
        hard_vocab_limit=False,
        model_type="unigram",
        character_coverage=0.9999,
        input_sentence_size=config.sp_sentence_sample,
        shuffle_input_sentence=True,
        num_threads=os.cpu_count() or 1,
        minloglevel=2,
    )
    return spm.SentencePieceProcessor(model_file=f"{prefix}.model").get_piece_size()


def _tokenized(corpus: Path, sp_path: Path) -> Iterator[str]:
    sp = spm.SentencePieceProcessor(model_file=str(sp_path))
    with open(corpus, encoding="utf-8") as handle:
        for line in handle:
            yield " ".join(sp.encode(line.rstrip("\n"), out_type=str))


def _perplexities(model: PerplexityModel, texts: list[str]) -> np.ndarray:
    values = [model.perplexity(t) for t in texts]
    return np.array([v for v in values if v is not None], dtype=float)


def train_reference_lm(
    storage: Storage,
    reference: dict[str, ShardManifest],
    web: ShardManifest,
    config: ReferenceLMConfig,
) -> ShardManifest:
    """Train and store the reference LM, bucket cutoffs and quality classifier.

    ``reference`` maps domain -> manifest (only ``config.reference_domains`` are used); ``web``
    is the raw web text the classifier's negatives and (by default) the cutoffs come from.
    The manifest's ``extra`` is a :class:`ReferenceLM` dump; load it with :func:`reference_lm_of`.
    """
    missing = [d for d in config.reference_domains if d not in reference]
    if missing:
        raise ValueError(f"reference domains {missing} have no manifest")
    inputs = [f"{d}:{reference[d].content_version}" for d in config.reference_domains]
    version_id = content_version(ASSET, CODE_VERSION, config, [*inputs, web.content_version])
    def build(version: OutputVersion) -> ShardManifest:
        return _train(storage, reference, web, config, version.folder)

    return build_version(storage, ASSET, None, version_id, build)


def _train(
    storage: Storage,
    reference: dict[str, ShardManifest],
    web: ShardManifest,
    config: ReferenceLMConfig,
    folder: str,
) -> ShardManifest:
    manifests = [reference[d] for d in config.reference_domains]
    positives = Reservoir(config.reference_sample_docs, config.seed)
    negatives = Reservoir(config.web_sample_docs, config.seed + 1)
    with tempfile.TemporaryDirectory(prefix="reference_lm-") as tmp:
        work = Path(tmp)
        corpus = work / "reference.txt"
        docs, lines = _write_normalized(storage, manifests, corpus, positives)
        if not lines:
            raise ValueError(f"the reference corpus {config.reference_domains} has no text")
        vocab = _train_sentencepiece(corpus, work / "sp", config)
        arpa, binary = work / "model.arpa", work / "model.binary"
        run_lmplz(
            _tokenized(corpus, work / "sp.model"),
            arpa,
            config.order,
            config.memory,
            config.discount_fallback,
            work,
        )
        build_binary(arpa, binary)
        ngram_counts = arpa_ngram_counts(arpa)
        kenlm_rel, sp_rel = f"{folder}/model.binary", f"{folder}/sp.model"
        storage.write_bytes(kenlm_rel, binary.read_bytes())
        storage.write_bytes(sp_rel, (work / "sp.model").read_bytes())
        model = PerplexityModel(str(binary), str(work / "sp.model"), config.scoring)
        for text in iter_texts(storage, [web]):
            negatives.add(text)
        ref_pp = _perplexities(model, positives.items)
        web_pp = _perplexities(model, negatives.items)
    source_pp = web_pp if config.bucket_source == "web" else ref_pp
    if not len(source_pp):
        raise ValueError(f"no {config.bucket_source} documents to derive bucket cutoffs from")
    low, high = np.percentile(source_pp, config.bucket_percentiles)
    classifier_bytes, classifier_metrics = train_attribute_classifiers(
        positives.items, negatives.items, config.classifier, config.seed
    )
    classifier_rel = f"{folder}/attribute_classifiers.joblib"
    storage.write_bytes(classifier_rel, classifier_bytes)
    result = ReferenceLM(
        kenlm_path=kenlm_rel,
        sp_path=sp_rel,
        classifier_path=classifier_rel,
        order=config.order,
        vocab_size=vocab,
        model_bytes=storage.size(kenlm_rel),
        ngram_counts=ngram_counts,
        bucket_cutoffs=(float(low), float(high)),
        bucket_source=config.bucket_source,
        scoring=config.scoring,
        reference_docs=docs,
        reference_lines=lines,
        reference_perplexity_median=float(np.median(ref_pp)) if len(ref_pp) else float("nan"),
        web_perplexity_median=float(np.median(web_pp)) if len(web_pp) else float("nan"),
        classifier_metrics=classifier_metrics,
    )
    return ShardManifest(
        asset=ASSET,
        counts={"reference_docs": docs, "reference_lines": lines,
                "web_sample_docs": len(negatives.items)},
        extra=result.model_dump(mode="json"),
    )  # fmt: skip


def reference_lm_of(manifest: ShardManifest) -> ReferenceLM:
    """The typed result stored in a ``reference_lm`` manifest."""
    return ReferenceLM.model_validate(manifest.extra)


def load_perplexity_model(storage: Storage, ref: ReferenceLM, cache_dir: str) -> PerplexityModel:
    """Open the stored KenLM and SentencePiece models (copied to ``cache_dir`` if remote),
    scoring in the mode the cutoffs were computed in."""
    paths = []
    for rel in (ref.kenlm_path, ref.sp_path):
        local = storage.local_path(rel)
        if local is None:
            local = os.path.join(cache_dir, os.path.basename(rel))
            Path(local).write_bytes(storage.read_bytes(rel))
        paths.append(local)
    return PerplexityModel(paths[0], paths[1], ref.scoring)
