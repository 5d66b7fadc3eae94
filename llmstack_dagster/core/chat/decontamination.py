"""Decontamination: drop SFT examples that share a word 13-gram with an evaluation item.

Text is lowercased and split into word tokens (``\\w+``: punctuation and symbols separate
tokens and are dropped). An example is contaminated by an eval set when any of its 13-grams
(all turns joined) is one of the set's 13-grams. An eval text with fewer than 13 tokens (a
short XSTest or Do-Not-Answer prompt) is matched whole: the example must contain its entire
token sequence; texts under ``min_tokens`` tokens are too generic to match and are skipped
(counted). See ``references/sft-decontamination.md``.

The index keeps only hashed n-grams (xxh3-64 of the space-joined tokens) per eval set, and the
red-team held-out split is :func:`red_team_split`, a seeded hash rule later stages reuse.
"""

from __future__ import annotations

import csv
import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import xxhash

from llmstack_dagster.core.curation.readers import SourceError
from llmstack_dagster.core.curation.readers.jsonl import read_jsonl
from llmstack_dagster.core.curation.sources import JsonlSource

NGRAM = 13
MIN_TOKENS = 5
RED_TEAM_FRACTION = 0.2
RED_TEAM_SEED = 0
EVAL_SETS = ("gsm8k_test", "humaneval", "xstest", "harmbench", "donotanswer", "red_team_heldout")
_TOKEN = re.compile(r"\w+")


def tokens(text: str) -> list[str]:
    """Lowercased word tokens, punctuation stripped."""
    return _TOKEN.findall(text.lower())


def _hash(toks: list[str], start: int, n: int) -> int:
    return xxhash.xxh3_64_intdigest(" ".join(toks[start : start + n]).encode())


def ngram_hashes(toks: list[str], n: int) -> set[int]:
    """Hashes of every n-gram of ``toks`` (none when there are fewer than ``n``)."""
    return {_hash(toks, i, n) for i in range(len(toks) - n + 1)}


# --- the red-team held-out split -------------------------------------------------------------


_FIRST_HUMAN = re.compile(r"\s*Human:\s*(.*?)(?:\n\nAssistant:|\Z)", re.S)


def first_human_turn(dialogue: str) -> str | None:
    """The first ``Human:`` turn of an HH-RLHF dialogue, or None."""
    match = _FIRST_HUMAN.match(dialogue)
    prompt = match.group(1).strip() if match else ""
    return prompt or None


def is_red_team_heldout(
    prompt: str, seed: int = RED_TEAM_SEED, fraction: float = RED_TEAM_FRACTION
) -> bool:
    """Held out when xxh64(f"{seed}:{prompt}") / 2**64 < ``fraction``: the same prompt always
    lands on the same side, whatever file or order it comes in."""
    return xxhash.xxh64_intdigest(f"{seed}:{prompt}".encode()) / 2**64 < fraction


@dataclass(frozen=True)
class RedTeamSplit:
    """Distinct first human turns of the HH-RLHF harmless dialogues, in file order."""

    train: list[str]
    heldout: list[str]


def red_team_split(
    path: Path, seed: int = RED_TEAM_SEED, fraction: float = RED_TEAM_FRACTION
) -> RedTeamSplit:
    """Split the first human turns (of ``chosen``) of ``preference/hh_rlhf_harmless.jsonl.gz``
    by :func:`is_red_team_heldout`; records without one are skipped."""
    seen: set[str] = set()
    train: list[str] = []
    heldout: list[str] = []
    for raw in read_jsonl(JsonlSource(name="red_team", paths=[str(path)])):
        chosen = (raw.record or {}).get("chosen")
        prompt = first_human_turn(chosen) if isinstance(chosen, str) else None
        if prompt is None or prompt in seen:
            continue
        seen.add(prompt)
        (heldout if is_red_team_heldout(prompt, seed, fraction) else train).append(prompt)
    return RedTeamSplit(train, heldout)


# --- eval sets -------------------------------------------------------------------------------


def _jsonl_texts(name: str, paths: list[str], keys: tuple[str, ...]) -> Iterator[str]:
    for raw in read_jsonl(JsonlSource(name=name, paths=paths)):
        for key in keys:
            value = (raw.record or {}).get(key)
            if isinstance(value, str):
                yield value


def _lines(name: str, path: Path) -> Iterator[str]:
    if not path.is_file():
        raise SourceError(name, f"file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        yield from (line.strip() for line in handle if line.strip())


def _csv_column(name: str, path: Path, column: str) -> Iterator[str]:
    if not path.is_file():
        raise SourceError(name, f"file not found: {path}")
    with path.open(newline="", encoding="utf-8") as handle:
        yield from (row[column] for row in csv.DictReader(handle) if row.get(column))


def eval_texts(name: str, data_dir: Path) -> Iterator[str]:
    """The texts of one eval set of :data:`EVAL_SETS` under the shared data folder."""
    d = Path(data_dir)
    if name == "gsm8k_test":
        return _jsonl_texts(name, [str(d / "eval/gsm8k/test.jsonl")], ("question", "answer"))
    if name == "humaneval":
        keys = ("prompt", "canonical_solution")
        return _jsonl_texts(name, [str(d / "eval/humaneval/HumanEval.jsonl.gz")], keys)
    if name == "xstest":
        return _csv_column(name, d / "safety/xstest_prompts.csv", "prompt")
    if name == "harmbench":
        return _lines(name, d / "safety/harmbench/harmbench_prompts.txt")
    if name == "donotanswer":
        return _jsonl_texts(name, [str(d / "safety/donotanswer/*.jsonl")], ("prompt",))
    if name == "red_team_heldout":
        return iter(red_team_split(d / "preference/hh_rlhf_harmless.jsonl.gz").heldout)
    raise KeyError(f"unknown eval set {name!r}; known: {EVAL_SETS}")


# --- the index -------------------------------------------------------------------------------


@dataclass
class EvalSetIndex:
    """Hashed n-grams of one eval set: full ``n``-grams, and whole short texts by length."""

    name: str
    n: int = NGRAM
    min_tokens: int = MIN_TOKENS
    grams: set[int] = field(default_factory=set)
    short: dict[int, set[int]] = field(default_factory=dict)
    texts: int = 0
    skipped_short: int = 0

    def add(self, text: str) -> None:
        toks = tokens(text)
        self.texts += 1
        if len(toks) >= self.n:
            self.grams |= ngram_hashes(toks, self.n)
        elif len(toks) >= self.min_tokens:
            self.short.setdefault(len(toks), set()).update(ngram_hashes(toks, len(toks)))
        else:
            self.skipped_short += 1


@dataclass(frozen=True)
class Contamination:
    """The eval set an example overlaps and one shared n-gram (its tokens)."""

    eval_set: str
    ngram: str


class DecontaminationIndex:
    """Every eval set's index; :meth:`find` names the first set (in order) a text overlaps."""

    def __init__(self, sets: list[EvalSetIndex]) -> None:
        self.sets = sets
        self.lengths = sorted({s.n for s in sets} | {n for s in sets for n in s.short})

    def find(self, text: str) -> Contamination | None:
        toks = tokens(text)
        grams: dict[int, dict[int, int]] = {}  # length -> hash -> start of that n-gram
        for n in self.lengths:
            if len(toks) >= n:
                starts = range(len(toks) - n + 1)
                grams[n] = {_hash(toks, i, n): i for i in starts}
        for eval_set in self.sets:
            wanted = [(eval_set.n, eval_set.grams), *eval_set.short.items()]
            for n, index in wanted:
                for h, start in grams.get(n, {}).items():
                    if h in index:
                        return Contamination(eval_set.name, " ".join(toks[start : start + n]))
        return None

    def summary(self) -> dict[str, dict[str, int]]:
        """Per eval set: texts indexed, distinct hashed n-grams, short texts skipped."""
        return {
            s.name: {
                "texts": s.texts,
                "ngrams": len(s.grams) + sum(len(v) for v in s.short.values()),
                "skipped_short": s.skipped_short,
            }
            for s in self.sets
        }


def build_index(
    data_dir: Path,
    names: tuple[str, ...] = EVAL_SETS,
    n: int = NGRAM,
    min_tokens: int = MIN_TOKENS,
) -> DecontaminationIndex:
    """Index the named eval sets of the shared data folder; a missing file is a
    ``SourceError`` naming the eval set (decontamination never silently skips a set)."""
    sets = []
    for name in names:
        index = EvalSetIndex(name, n, min_tokens)
        for text in eval_texts(name, data_dir):
            index.add(text)
        sets.append(index)
    return DecontaminationIndex(sets)
