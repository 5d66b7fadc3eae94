"""Decontamination: drop SFT examples that share a word 13-gram with an evaluation item.

Text is lowercased and split into word tokens (``\\w+``: punctuation and symbols separate
tokens and are dropped). An example is contaminated by an eval set when any of its 13-grams
(all turns joined) is one of the set's 13-grams. An eval text with fewer than 13 tokens (a
short XSTest or Do-Not-Answer prompt) is matched whole: the example must contain its entire
token sequence; texts under ``min_tokens`` tokens are too generic to match and are skipped
(counted). See ``references/sft-decontamination.md``.

The index keeps only hashed n-grams (xxh3-64 of the space-joined tokens) per eval set. The eval
sets are read by ``core.evaluation.eval_sets``, which also holds the red-team held-out split
(:func:`red_team_split`, a seeded hash rule; re-exported here for SFT).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import xxhash

from llmstack_dagster.core.evaluation.eval_sets import (
    RED_TEAM_FRACTION,
    RED_TEAM_SEED,
    EvalPrompt,
    RedTeamSplit,
    donotanswer_prompts,
    first_human_turn,
    gsm8k_problems,
    harmbench_prompts,
    is_red_team_heldout,
    read_jsonl_rows,
    red_team_heldout_prompts,
    red_team_split,
    xstest_prompts,
)

__all__ = [  # the red-team split is re-exported for SFT
    "EVAL_SETS",
    "MIN_TOKENS",
    "NGRAM",
    "RED_TEAM_FRACTION",
    "RED_TEAM_SEED",
    "Contamination",
    "DecontaminationIndex",
    "EvalSetIndex",
    "RedTeamSplit",
    "build_index",
    "eval_texts",
    "first_human_turn",
    "is_red_team_heldout",
    "ngram_hashes",
    "red_team_split",
    "tokens",
]

NGRAM = 13
MIN_TOKENS = 5
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


# --- eval sets -------------------------------------------------------------------------------


def _humaneval_texts(data_dir: Path) -> Iterator[str]:
    path = str(data_dir / "eval/humaneval/HumanEval.jsonl.gz")
    for _, record in read_jsonl_rows("humaneval", path):
        for key in ("prompt", "canonical_solution"):
            if isinstance(record.get(key), str):
                yield record[key]


def _prompt_texts(prompts: list[EvalPrompt]) -> Iterator[str]:
    return (p.text for p in prompts)


def eval_texts(name: str, data_dir: Path) -> Iterator[str]:
    """The texts of one eval set of :data:`EVAL_SETS` under the shared data folder, read by
    the loaders of ``core.evaluation.eval_sets``."""
    d = Path(data_dir)
    if name == "gsm8k_test":
        problems = gsm8k_problems(d, "test")
        return (text for p in problems for text in (p.question, p.solution))
    if name == "humaneval":
        return _humaneval_texts(d)
    if name == "xstest":
        return _prompt_texts(xstest_prompts(d))
    if name == "harmbench":
        return _prompt_texts(harmbench_prompts(d))
    if name == "donotanswer":
        return _prompt_texts(donotanswer_prompts(d))
    if name == "red_team_heldout":
        return _prompt_texts(red_team_heldout_prompts(d))
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
