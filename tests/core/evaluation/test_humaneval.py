"""HumanEval on the real problems: loading, programs from base and chat generations, sandboxed
checks and the pass@k estimator."""

from __future__ import annotations

import random
import textwrap
from pathlib import Path

import pytest

from llmstack_dagster.core.curation.readers import SourceError
from llmstack_dagster.core.evaluation.humaneval import (
    CodeProblem,
    check_program,
    completion_code,
    humaneval_problems,
    pass_at_k,
    run_humaneval,
)
from llmstack_dagster.core.evaluation.sandbox import SandboxLimits

LIMITS = SandboxLimits(timeout_s=10.0)


@pytest.fixture(scope="module")
def problems(shared_data: Path) -> dict[str, CodeProblem]:
    return {p.task_id: p for p in humaneval_problems(shared_data)}


def test_the_164_problems_load(problems: dict[str, CodeProblem]) -> None:
    assert len(problems) == 164
    first = problems["HumanEval/0"]
    assert first.entry_point == "has_close_elements"
    assert f"def {first.entry_point}(" in first.prompt
    assert "def check(candidate)" in first.test


def test_a_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"eval/humaneval/HumanEval\.jsonl\.gz"):
        humaneval_problems(tmp_path)


def test_canonical_solutions_pass_and_a_wrong_one_fails(problems: dict[str, CodeProblem]) -> None:
    sample = random.Random(0).sample(sorted(problems), 4)
    chosen = [problems[task_id] for task_id in sample]
    codes = [p.prompt + p.canonical_solution for p in chosen]
    codes.append(chosen[0].prompt + "    return None\n")
    results = run_humaneval([*chosen, chosen[0]], codes, LIMITS, workers=2)
    assert [r.status for r in results] == ["passed"] * 4 + ["failed"], [r.output for r in results]


def test_pass_at_1_of_passing_failing_and_hanging_is_one_third(
    problems: dict[str, CodeProblem],
) -> None:
    problem = problems["HumanEval/0"]
    codes = [
        problem.prompt + problem.canonical_solution,
        problem.prompt + "    return not any(numbers)\n",
        problem.prompt + "    while True:\n        pass\n",
    ]
    results = run_humaneval([problem] * 3, codes, SandboxLimits(timeout_s=2.0), workers=3)
    assert [r.status for r in results] == ["passed", "failed", "timeout"]
    scores = [pass_at_k(1, int(r.status == "passed"), 1) for r in results]
    assert sum(scores) / len(scores) == pytest.approx(1 / 3)


def test_pass_at_k_matches_hand_computed_values() -> None:
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)  # 1 - C(3,1)/C(5,1) = 1 - 3/5
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 4, 2) == 1.0  # n - c < k: every draw of 2 holds a correct sample
    assert pass_at_k(200, 13, 10) == pytest.approx(1 - _comb_ratio(200, 13, 10))
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 0)


def _comb_ratio(n: int, c: int, k: int) -> float:
    from math import comb

    return comb(n - c, k) / comb(n, k)


def test_base_generations_are_cut_at_the_stop_sequences(problems: dict[str, CodeProblem]) -> None:
    problem = problems["HumanEval/0"]
    body = problem.canonical_solution
    for tail in ("\ndef helper():\n    pass\n", "\nif __name__ == '__main__':\n    main()\n",
                 "\nprint(has_close_elements([1.0], 0.5))\n", "\n# tests\nassert False\n",
                 "\nclass Extra:\n    pass\n"):
        code = completion_code(problem, body + tail, chat=False)
        assert code == problem.prompt + body
    result = run_humaneval([problem], [completion_code(problem, body + "\nassert False\n", False)])
    assert result[0].status == "failed"  # no stop sequence before the assert: it is kept


def test_chat_answer_with_a_full_function_keeps_the_prompt_helpers(
    problems: dict[str, CodeProblem],
) -> None:
    problem = problems["HumanEval/38"]  # decode_cyclic calls encode_cyclic from the prompt
    answer = (
        "Sure! Decoding applies the encoding twice.\n\n"
        "```text\nnot the code\n```\n"
        "```python\ndef decode_cyclic(s: str):\n    return encode_cyclic(encode_cyclic(s))\n```\n"
        "This works because rotating a group of three by one, three times, is the identity."
    )
    code = completion_code(problem, answer, chat=True)
    assert code.startswith(problem.prompt.rstrip())
    assert "not the code" not in code and "This works" not in code
    assert run_humaneval([problem], [code], LIMITS)[0].status == "passed"


def test_chat_answer_with_only_a_body_continues_the_prompt(
    problems: dict[str, CodeProblem],
) -> None:
    problem = problems["HumanEval/2"]
    unindented = textwrap.dedent(problem.canonical_solution).strip("\n")
    answer = f"Here you go:\n```\n{unindented}\n```"
    code = completion_code(problem, answer, chat=True)
    assert code == problem.prompt + textwrap.indent(unindented, "    ") + "\n"
    assert run_humaneval([problem], [code], LIMITS)[0].status == "passed"


def test_chat_answers_without_a_fence_or_with_an_unclosed_one(
    problems: dict[str, CodeProblem],
) -> None:
    problem = problems["HumanEval/2"]
    plain = "def truncate_number(number: float) -> float:\n    return number % 1.0\n"
    assert completion_code(problem, plain, chat=True).endswith(plain)
    unclosed = "```python\ndef truncate_number(number):\n    return number % 1.0\n"
    assert completion_code(problem, unclosed, chat=True).endswith("return number % 1.0\n")


def test_check_program_appends_the_tests_and_the_call(problems: dict[str, CodeProblem]) -> None:
    problem = problems["HumanEval/0"]
    program = check_program(problem, "CODE")
    assert program.startswith("CODE\n")
    assert problem.test in program
    assert program.rstrip().endswith("check(has_close_elements)")
