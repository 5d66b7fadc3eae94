"""Regenerate the bundled SFT demo subset (``llmstack_dagster/demo_corpus/sft``).

From each shared file it keeps the lines with the lowest seeded hash of their line number
(``xxh64(f"sft-demo:{line}")``), in file order, copied byte for byte and gzip-compressed with a
fixed timestamp, so the same inputs always give the same files.

    .venv/bin/python scripts/make_sft_demo.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import gzip
import heapq
from pathlib import Path

import xxhash

from llmstack_dagster.core.chat.sources import DEMO_SFT_DIR, DEMO_SFT_FILES

# shared file (relative to the data folder), lines kept
PICKS = (
    ("sft/t0_prompt_completion.jsonl", 200),
    ("sft/self_instruct_seed_tasks.jsonl", 60),
    ("eval/gsm8k/train.jsonl", 150),
)


def pick_lines(path: Path, count: int) -> list[bytes]:
    """The ``count`` non-blank lines with the lowest seeded hash, in file order."""
    lines = [line for line in path.read_bytes().splitlines(keepends=True) if line.strip()]
    scores = [(xxhash.xxh64_intdigest(f"sft-demo:{i}".encode()), i) for i in range(len(lines))]
    return [lines[i] for _, i in sorted(heapq.nsmallest(count, scores), key=lambda s: s[1])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    DEMO_SFT_DIR.mkdir(parents=True, exist_ok=True)
    for (rel, count), name in zip(PICKS, DEMO_SFT_FILES, strict=True):
        lines = pick_lines(args.data / rel, count)
        with gzip.GzipFile(DEMO_SFT_DIR / name, "wb", mtime=0) as out:
            out.writelines(line if line.endswith(b"\n") else line + b"\n" for line in lines)
        print(f"{name}: {len(lines)} lines from {rel}")


if __name__ == "__main__":
    main()
