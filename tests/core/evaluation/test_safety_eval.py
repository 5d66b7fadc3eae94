from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from support.checkpoints import write_checkpoint

from llmstack_dagster.core.evaluation import eval_sets
from llmstack_dagster.core.evaluation.humaneval import humaneval_problems
from llmstack_dagster.core.evaluation.prompting import CONTINUE_INSTRUCTION
from llmstack_dagster.core.evaluation.safety_eval import (
    EvalModel,
    SafetyEvalConfig,
    humaneval_request,
    load_eval_model,
    refusal_sets,
    run_safety_eval,
)
from llmstack_dagster.core.models.config import ModelConfig

CFG = SafetyEvalConfig(rtp_per_category=2, rtp_samples=3, refusal_per_set=4, gsm8k_problems=4,
                       humaneval_problems=2, humaneval_timeout_s=5.0)  # fmt: skip
REFUSAL = "I'm sorry, I cannot help with that."


@dataclass
class ScriptedPrompter:
    """Answers like a model would, from a script keyed by the request."""

    mode: str
    script: dict[str, str]

    def answer(self, model, texts, max_new_tokens, **_) -> list[str]:  # noqa: ANN001
        return [self.script.get(t, "Sure, here it is.") for t in texts]


class KeywordClassifier:
    def predict_proba(self, answers: list[str]) -> np.ndarray:
        return np.array([1.0 if "sorry" in a.lower() else 0.0 for a in answers])


def test_metrics_follow_the_answers(shared_data: Path) -> None:
    sets = {n: eval_sets.seeded_subset(p, 4, 0) for n, p in refusal_sets(shared_data).items()}
    math = eval_sets.seeded_subset(eval_sets.gsm8k_problems(shared_data), 4, 0)
    code = eval_sets.seeded_subset(humaneval_problems(shared_data), 2, 0)
    script = {p.text: REFUSAL for p in sets["harmbench"] + sets["xstest_unsafe"]}
    script |= {sets["xstest_safe"][0].text: REFUSAL}  # one over-refusal in four
    script |= {p.question: f"So the answer is #### {p.answer}" for p in math[:3]}
    solved = f"```python\n{code[0].prompt}{code[0].canonical_solution}```"
    script |= {humaneval_request(code[0].prompt, "chat"): solved}
    rtp = eval_sets.rtp_prompts(shared_data)
    script |= {CONTINUE_INSTRUCTION + p.text: "you idiot, shut up, you stupid fool" for p in rtp}

    def scorer(texts: list[str]) -> np.ndarray:
        return np.array([0.9 if "idiot" in t else 0.1 for t in texts])

    ev = EvalModel(model=None, prompter=ScriptedPrompter("chat", script))  # type: ignore[arg-type]
    result = run_safety_eval(ev, shared_data, CFG, KeywordClassifier(), scorer, log=lambda _: None)
    m = result.metrics
    assert result.mode == "chat"
    assert m["refusal/harmbench"] == 1.0 and m["refusal/xstest_unsafe"] == 1.0
    assert m["refusal/donotanswer"] == 0.0 and m["refusal/red_team_heldout"] == 0.0
    assert m["over_refusal/xstest_safe"] == 0.25
    assert m["gsm8k/exact_match"] == 0.75
    assert m["humaneval/pass@1"] == 0.5  # the canonical solution passes, "Sure" does not
    assert m["toxicity/expected_max_toxicity"] == pytest.approx(0.9)
    assert m["toxicity/toxicity_probability"] == 1.0
    assert len(result.toxicity) == 8  # 7 categories and "all"
    table = result.table()
    suites = table.column("suite").to_pylist()
    assert suites.count("toxicity") == 7 * 2 * 3 and suites.count("refusal") == 5 * 4
    assert suites.count("gsm8k") == 4 and suites.count("humaneval") == 2


def test_a_real_checkpoint_answers_every_suite(shared_data: Path, tokenizer_file: Path,
                                               tmp_path: Path) -> None:  # fmt: skip
    from llmstack_dagster.core.training.tokenizer import load_tokenizer

    vocab = load_tokenizer(tokenizer_file).get_vocab_size()
    cfg = ModelConfig(vocab_size=vocab, d_model=32, n_layers=1, n_heads=2, n_kv_heads=2,
                      ffn_hidden=64, max_seq_len=128)  # fmt: skip
    _, checkpoint = write_checkpoint(tmp_path / "run", cfg)
    small = CFG.model_copy(update={"rtp_samples": 1, "refusal_per_set": 1, "gsm8k_problems": 1,
                                   "gsm8k_max_new_tokens": 8, "humaneval_problems": 1,
                                   "humaneval_max_new_tokens": 8, "rtp_max_new_tokens": 5,
                                   "refusal_max_new_tokens": 5, "rtp_per_category": 1})  # fmt: skip
    for mode in ("continuation", "chat"):
        ev = load_eval_model(checkpoint, tokenizer_file, mode)
        assert ev.prompter.mode == mode
        scorer = lambda texts: np.zeros(len(texts))  # noqa: E731
        result = run_safety_eval(ev, shared_data, small, KeywordClassifier(), scorer,
                                 log=lambda _: None)  # fmt: skip
        assert result.table().num_rows == 7 + 5 + 1 + 1
        assert set(result.metrics) >= {"gsm8k/exact_match", "humaneval/pass@1",
                                       "over_refusal/xstest_safe"}  # fmt: skip
