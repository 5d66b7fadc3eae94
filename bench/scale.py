"""Scale-out benchmark: per-shard stages on the local and Ray engines with 1 and 2 workers,
and the dedup shuffle against the in-memory dedup, on one synthetic corpus.

    .venv/bin/python bench/scale.py                     # 24k documents in 12 shards
    .venv/bin/python bench/scale.py --docs 4000 --quality-docs 600   # quick

Corpus: the real texts of ../shared/data (``synthetic.load_texts``), cycled, a fifth of them
edited (``synthetic.edit``) so the dedup has near-duplicates. Ray runs an in-process cluster
(``num_cpus=2``, no dashboard); each engine is warmed up once (numba compiles in every new
worker process) before it is timed, fingerprints best of three runs. Overhead per shard: a
no-op task over the same shards.
Quality scoring loads its models once per worker and call; that fixed cost is measured on a
corpus of one document a shard and left out of the steady rate and the ratios.
Writes ``bench/results/scale.json``. On a shared machine the 2-worker speedups are
understated: compare the rows of one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from llmstack_dagster.core.curation.dedup.clusters import find_duplicate_clusters
from llmstack_dagster.core.curation.dedup.config import DedupConfig
from llmstack_dagster.core.curation.dedup.fingerprints import _fingerprint_shards
from llmstack_dagster.core.curation.dedup.shuffle_dedup import (
    ShuffleConfig,
    find_duplicate_clusters_shuffled,
)
from llmstack_dagster.core.curation.dedup.synthetic import edit, load_texts
from llmstack_dagster.core.curation.quality.reference_lm import (
    ReferenceLMConfig,
    reference_lm_of,
    train_reference_lm,
)
from llmstack_dagster.core.curation.quality.scoring import QualityConfig, _score_pass
from llmstack_dagster.core.scale.ray_backend import RayShardMap, ray_runtime_env
from llmstack_dagster.core.scale.shard_map import LocalShardMap, ShardMap
from llmstack_dagster.core.schema import DOCUMENT_SCHEMA, make_document
from llmstack_dagster.core.storage import ShardManifest, ShardWriter, Storage

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared" / "data").resolve()


def write_corpus(
    storage: Storage, name: str, docs: int, shards: int, seed: int = 0
) -> ShardManifest:
    """``docs`` documents of real text in ``shards`` shards, a fifth of them edited copies."""
    rng = np.random.default_rng(seed)
    texts = load_texts(SHARED, min_words=40)
    vocabulary = " ".join(texts[:20]).split()
    writer = ShardWriter(storage, f"raw/{name}", DOCUMENT_SCHEMA, max_rows=-(-docs // shards))
    epoch = datetime(2020, 1, 1, tzinfo=UTC)
    for i in range(docs):
        text = texts[i % len(texts)]
        if i >= len(texts) or rng.random() < 0.2:
            text = edit(text, rng, vocabulary, float(rng.random()))
        writer.write_row(make_document(id=f"{name}/{i}", text=text, domain=name, source="bench",
                                       created=epoch + timedelta(minutes=i)))  # fmt: skip
    return ShardManifest(asset="raw", partition=name, shards=writer.close())


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def engines() -> dict[str, ShardMap]:
    return {
        "local-1": LocalShardMap(1),
        "local-2": LocalShardMap(2),
        "ray-1": RayShardMap(workers=1, max_retries=1),
        "ray-2": RayShardMap(workers=2, max_retries=1),
    }


def overhead(engine: ShardMap, shards: int) -> float:
    """Seconds per shard of a no-op task (scheduling, pickling, result transfer)."""
    seconds, _ = timed(lambda: engine.map(abs, list(range(shards))))
    return seconds / shards


def bench_fingerprints(storage: Storage, docs: ShardManifest) -> dict[str, Any]:
    config = DedupConfig()
    out = {}
    for name, engine in engines().items():
        run = partial(_fingerprint_shards, storage, docs, "web", config)
        run(f"warm-{name}", engine)  # numba compiles once per worker process
        # best of three: a run is a few seconds, so one run swings by ~10% on a 2-core box
        runs = [timed(partial(run, f"fp-{name}-{k}", engine)) for k in range(3)]
        seconds, manifest = min(runs, key=lambda r: r[0])
        out[name] = {
            "seconds": round(seconds, 3),
            "docs_per_s": round(manifest.rows / seconds, 1),
            "overhead_s_per_shard": round(overhead(engine, len(docs.shards)), 4),
        }
    return out


def bench_quality(
    storage: Storage, docs: ShardManifest, tiny: ShardManifest, reference: ShardManifest
) -> dict:
    """Each engine scores ``tiny`` (one document a shard: worker start, model loading and
    per-shard costs), then ``docs``; the steady rate leaves the fixed cost out, as a worker
    scoring millions of documents a stage does."""
    lm = ReferenceLMConfig(reference_domains=["wiki"], vocab_size=1000,
                           reference_sample_docs=60, web_sample_docs=60)  # fmt: skip
    ref = reference_lm_of(train_reference_lm(storage, {"wiki": reference}, reference, lm))
    out = {}
    for name, engine in engines().items():
        def run(corpus: ShardManifest, tag: str, e: ShardMap = engine) -> list:
            return _score_pass(storage, corpus, False, ref, QualityConfig(), tag, e,
                               f"{tag}/.work")  # fmt: skip

        fixed, _ = timed(partial(run, tiny, f"qt-{name}"))
        seconds, shards = timed(partial(run, docs, f"q-{name}"))
        rows = sum(s.rows for s in shards)
        out[name] = {"seconds": round(seconds, 3), "docs_per_s": round(rows / seconds, 1),
                     "fixed_seconds": round(fixed, 3),
                     "steady_docs_per_s": round(rows / (seconds - fixed), 1)}  # fmt: skip
    return out


def bench_dedup(storage: Storage, docs: ShardManifest) -> dict[str, Any]:
    """In-memory dedup, then the shuffle on each engine; each run removes the previous one's
    output first (same inputs give the same content version, which would be reused)."""
    config = DedupConfig()
    prints = {"web": _fingerprint_shards(storage, docs, "web", config, "dd/fp", LocalShardMap())}
    prints["web"].content_version = "bench"
    seconds, local = timed(partial(find_duplicate_clusters, storage, prints, config))
    expected = [storage.read_bytes(s.path) for s in local.shards]
    runs: dict[str, Any] = {"in_memory": {"seconds": round(seconds, 3)}}
    shuffled = {"shuffle local-1": LocalShardMap(1), "shuffle ray-2": engines()["ray-2"]}
    for name, engine in shuffled.items():
        storage.rm("duplicate_clusters")
        run = partial(find_duplicate_clusters_shuffled, storage, prints, config, engine,
                      ShuffleConfig(partitions=8))  # fmt: skip
        seconds, manifest = timed(run)
        same = [storage.read_bytes(s.path) for s in manifest.shards] == expected
        runs[name] = {"seconds": round(seconds, 3), "identical_removal_list": same}
    for row in runs.values():
        row["removed"] = local.counts["removed"]
        row["docs_per_s"] = round(local.counts["documents"] / row["seconds"], 1)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=24_000)
    parser.add_argument("--shards", type=int, default=12)
    parser.add_argument("--quality-docs", type=int, default=2_400)
    parser.add_argument("--out", default=str(ROOT / "bench/results/scale.json"))
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        storage = Storage(str(Path(tmp) / "store"))
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(Path(tmp) / "ray"),
                 runtime_env=ray_runtime_env(), log_to_driver=False, logging_level="ERROR")
        try:
            docs = write_corpus(storage, "web", args.docs, args.shards)
            quality_docs = write_corpus(storage, "qual", args.quality_docs, args.shards, seed=1)
            tiny = write_corpus(storage, "tiny", args.shards, args.shards, seed=2)
            results = {
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                            "ray": ray.__version__, "load_average_at_start": os.getloadavg()},
                "corpus": {"docs": args.docs, "shards": args.shards,
                           "quality_docs": args.quality_docs},
            }  # fmt: skip
            results["fingerprints"] = bench_fingerprints(storage, docs)
            print(json.dumps(results["fingerprints"]), flush=True)
            results["dedup"] = bench_dedup(storage, docs)
            print(json.dumps(results["dedup"]), flush=True)
            results["quality_scoring"] = bench_quality(storage, quality_docs, tiny, docs)
        finally:
            ray.shutdown()
    for stage in ("fingerprints", "quality_scoring"):
        rows = results[stage]
        # engines warmed up (fingerprints) or their fixed cost left out (quality scoring)
        busy = {k: r["seconds"] - r.get("fixed_seconds", 0.0) for k, r in rows.items()}
        results[stage]["speedup_2_over_1"] = {
            e: round(busy[f"{e}-1"] / busy[f"{e}-2"], 2) for e in ("local", "ray")
        }
        results[stage]["ray_over_local_time"] = {
            w: round(busy[f"ray-{w}"] / busy[f"local-{w}"], 2) for w in ("1", "2")
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
