"""Typed loaders of the shared evaluation sets (``safety/`` and ``eval/`` of the data folder).

One reader per file format (:func:`read_lines`, :func:`read_csv_rows`, :func:`read_jsonl_rows`)
serves both these loaders and SFT decontamination. A missing file is a ``SourceError`` naming
the set and the path; a malformed record is one too (an eval set never loses rows silently).
Prompt texts are stripped. Ids are stable: ``<set>-<1-based position in the file>`` (XSTest
keeps its own ``v2-<id>``).

The red-team held-out split (:func:`red_team_split`) lives here too: a seeded hash rule on the
first human turn of HH-RLHF harmless dialogues, so SFT and evaluation get the same split.
"""

from __future__ import annotations

import csv
import gzip
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

import xxhash

from llmstack_dagster.core.curation.readers import SourceError
from llmstack_dagster.core.curation.readers.jsonl import read_jsonl
from llmstack_dagster.core.curation.sources import JsonlSource

T = TypeVar("T")

RED_TEAM_FRACTION = 0.2
RED_TEAM_SEED = 0
RED_TEAM_PATH = "preference/hh_rlhf_harmless.jsonl.gz"


@dataclass(frozen=True)
class EvalPrompt:
    """One evaluation prompt; ``category`` and ``label`` are set where the source has them."""

    id: str
    text: str
    category: str = ""
    label: str = ""


@dataclass(frozen=True)
class MathProblem:
    """A GSM8K problem: ``solution`` is the worked solution as in the file (with its
    ``#### answer`` line), ``answer`` the normalized final answer (:func:`normalize_number`)."""

    id: str
    question: str
    solution: str
    answer: str


# --- readers ---------------------------------------------------------------------------------


def _require(name: str, path: Path) -> Path:
    if not path.is_file():
        raise SourceError(name, f"file not found: {path}")
    return path


def read_lines(name: str, path: Path) -> list[str]:
    """The stripped non-empty lines of a text file (plain or gzip)."""
    opener = gzip.open if _require(name, path).suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip()]


def read_csv_rows(name: str, path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file with a header line."""
    with _require(name, path).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def read_jsonl_rows(name: str, pattern: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(file, record) of every line of the JSON Lines files matching ``pattern`` (sorted);
    an undecodable line is a ``SourceError``."""
    for raw in read_jsonl(JsonlSource(name=name, paths=[pattern])):
        if raw.record is None:
            raise SourceError(name, f"{raw.uri} {raw.locator}: {raw.error} ({raw.detail})")
        yield raw.uri, raw.record


# --- safety prompts --------------------------------------------------------------------------


def rtp_prompts(data_dir: Path) -> list[EvalPrompt]:
    """RealToxicityPrompts challenging prompts; category from ``rtp_<category>.txt``."""
    folder = Path(data_dir) / "safety/realtoxicityprompts"
    paths = sorted(folder.glob("rtp_*.txt"))
    if not paths:
        raise SourceError("realtoxicityprompts", f"file not found: {folder}/rtp_*.txt")
    prompts = []
    for path in paths:
        category = path.stem.removeprefix("rtp_")
        for i, text in enumerate(read_lines("realtoxicityprompts", path), start=1):
            prompts.append(EvalPrompt(f"rtp-{category}-{i}", text, category=category))
    return prompts


def harmbench_prompts(data_dir: Path) -> list[EvalPrompt]:
    """HarmBench standard behaviours, one a line."""
    path = Path(data_dir) / "safety/harmbench/harmbench_prompts.txt"
    lines = read_lines("harmbench", path)
    return [EvalPrompt(f"harmbench-{i}", text) for i, text in enumerate(lines, start=1)]


def donotanswer_prompts(data_dir: Path) -> list[EvalPrompt]:
    """Do-Not-Answer prompts; category = the risk area (file stem), files in sorted order."""
    pattern = str(Path(data_dir) / "safety/donotanswer/*.jsonl")
    prompts: list[EvalPrompt] = []
    counts: dict[str, int] = {}
    for uri, record in read_jsonl_rows("donotanswer", pattern):
        text = record.get("prompt")
        if not isinstance(text, str) or not text.strip():
            continue
        area = Path(uri).stem
        counts[area] = counts.get(area, 0) + 1
        prompts.append(EvalPrompt(f"dna-{area}-{counts[area]}", text.strip(), category=area))
    return prompts


def xstest_prompts(data_dir: Path) -> list[EvalPrompt]:
    """XSTest v2 prompts: category = ``type``, label = ``safe`` or ``unsafe``."""
    rows = read_csv_rows("xstest", Path(data_dir) / "safety/xstest_prompts.csv")
    return [
        EvalPrompt(f"xstest-v2-{row['id']}", row["prompt"].strip(), row["type"], row["label"])
        for row in rows
        if row.get("prompt", "").strip()
    ]


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


def red_team_heldout_prompts(data_dir: Path) -> list[EvalPrompt]:
    """The held-out red-team prompts of :func:`red_team_split` (default seed and fraction)."""
    heldout = red_team_split(Path(data_dir) / RED_TEAM_PATH).heldout
    return [EvalPrompt(f"red-team-{i}", text) for i, text in enumerate(heldout, start=1)]


# --- GSM8K -----------------------------------------------------------------------------------


def normalize_number(text: str) -> str | None:
    """Canonical form of a number: "," and "$" removed, a trailing "." dropped, then the
    decimal value without exponent or trailing zeros ("1,234" -> "1234", "3.50" -> "3.5",
    "3.0" -> "3", "-0" -> "0"); None when the rest is not a number."""
    cleaned = text.strip().replace(",", "").replace("$", "").rstrip(".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    return "0" if value == 0 else format(value.normalize(), "f")


def gsm8k_problems(data_dir: Path, split: str = "test") -> list[MathProblem]:
    """GSM8K ``eval/gsm8k/{split}.jsonl``: the final answer follows the last ``####``."""
    name = f"gsm8k_{split}"
    path = Path(data_dir) / f"eval/gsm8k/{split}.jsonl"
    _require(name, path)
    problems = []
    for i, (_, record) in enumerate(read_jsonl_rows(name, str(path)), start=1):
        solution = str(record.get("answer", ""))
        answer = normalize_number(solution.rsplit("####", 1)[-1]) if "####" in solution else None
        if answer is None:
            raise SourceError(name, f"{path} line {i}: no '#### <number>' final answer")
        problems.append(
            MathProblem(f"gsm8k-{split}-{i}", str(record["question"]), solution, answer)
        )
    return problems


# --- subsets ---------------------------------------------------------------------------------


def seeded_subset(items: list[T], n: int | None, seed: int) -> list[T]:
    """``n`` items drawn without replacement by ``random.Random(seed)``, kept in their original
    order; all of them when ``n`` is None or at least ``len(items)``."""
    if n is None or n >= len(items):
        return list(items)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    chosen = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in chosen]
