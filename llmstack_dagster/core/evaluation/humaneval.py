"""HumanEval (Chen et al. 2021): turn generations into programs, run them sandboxed, pass@k.

Each problem is a function signature with a docstring (``prompt``); a program is the completed
function followed by the problem's ``test`` (which defines ``check(candidate)``) and
``check(<entry_point>)``. A problem passes when that program exits 0 inside
:func:`~llmstack_dagster.core.evaluation.sandbox.run_python`.
"""

from __future__ import annotations

import gzip
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from llmstack_dagster.core.curation.readers import SourceError
from llmstack_dagster.core.evaluation.sandbox import SandboxLimits, SandboxResult, run_python

HUMANEVAL_FILE = "eval/humaneval/HumanEval.jsonl.gz"
# the Codex paper's stop sequences: a new top-level statement ends the function body
STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
HUMANEVAL_LIMITS = SandboxLimits(timeout_s=10.0)
_FENCE = re.compile(r"```([^\n`]*)\n(.*?)(?:```|\Z)", re.DOTALL)


@dataclass(frozen=True)
class CodeProblem:
    """One HumanEval problem."""

    task_id: str
    prompt: str
    canonical_solution: str
    test: str
    entry_point: str


def humaneval_problems(data_dir: Path) -> list[CodeProblem]:
    """The 164 problems of ``{data_dir}/eval/humaneval/HumanEval.jsonl.gz``, in file order."""
    path = Path(data_dir) / HUMANEVAL_FILE
    if not path.is_file():
        raise SourceError("humaneval", f"file not found: {path}")
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [
        CodeProblem(
            task_id=row["task_id"], prompt=row["prompt"],
            canonical_solution=row["canonical_solution"], test=row["test"],
            entry_point=row["entry_point"],
        )
        for row in rows
    ]


def truncate_at_stop(generation: str) -> str:
    """The generation up to the first stop sequence."""
    cut = min((i for i in (generation.find(s) for s in STOP_SEQUENCES) if i >= 0), default=-1)
    return generation if cut < 0 else generation[:cut]


def extract_code_block(answer: str) -> str:
    """The first ```python fenced block, else the first fenced block, else the whole answer.

    An unclosed fence (a truncated answer) runs to the end of the text."""
    blocks = [(m.group(1).strip().lower(), m.group(2)) for m in _FENCE.finditer(answer)]
    for language, body in blocks:
        if language in ("python", "py", "python3"):
            return body
    return blocks[0][1] if blocks else answer


def completion_code(problem: CodeProblem, generation: str, chat: bool) -> str:
    """The program text for one generation (without the tests).

    Base models continue the prompt: the generation is cut at the stop sequences and appended.
    Chat answers: the code block is taken; if it defines the entry point it follows the whole
    prompt (imports, helper functions and the stub it redefines), else it is the body of the
    prompt's function (indented by four spaces when it is not indented at all)."""
    if not chat:
        return problem.prompt + truncate_at_stop(generation)
    code = extract_code_block(generation).strip("\n")
    defines = re.compile(rf"^\s*(?:async\s+)?def\s+{re.escape(problem.entry_point)}\s*\(", re.M)
    if defines.search(code):
        return f"{problem.prompt.rstrip()}\n\n\n{code}\n"
    lines = code.splitlines()
    first = next((line for line in lines if line.strip()), "")
    if first and not first[0].isspace():
        lines = [f"    {line}" if line.strip() else line for line in lines]
    return problem.prompt + "\n".join(lines) + "\n"


def check_program(problem: CodeProblem, code: str) -> str:
    """The program that exits 0 only if ``code`` passes the problem's tests."""
    return f"{code}\n\n{problem.test}\n\ncheck({problem.entry_point})\n"


def run_humaneval(
    problems: list[CodeProblem],
    codes: list[str],
    limits: SandboxLimits = HUMANEVAL_LIMITS,
    workers: int = 2,
) -> list[SandboxResult]:
    """Run each program (``codes[i]`` for ``problems[i]``) in its own sandbox; results in order."""
    if len(problems) != len(codes):
        raise ValueError(f"{len(problems)} problems but {len(codes)} codes")
    programs = [check_program(p, c) for p, c in zip(problems, codes, strict=True)]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(lambda program: run_python(program, limits), programs))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples with ``c`` correct: ``1 - C(n-c, k) / C(n, k)``.

    Computed as ``1 - prod_{i=n-c+1}^{n} (1 - k/i)``, which avoids huge binomials."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product
