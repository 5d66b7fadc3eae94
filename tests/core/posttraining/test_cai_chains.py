"""Critique and revision chains: every step stored, seeded principles, degenerate generations
quarantined with the step that produced them."""

from __future__ import annotations

import pyarrow as pa

from llmstack_dagster.core.posttraining.cai_chains import (
    CHAIN_SCHEMA,
    RedTeamPrompt,
    RevisionConfig,
    degenerate,
    run_chains,
)
from llmstack_dagster.core.posttraining.constitution import load_constitution, sample_ids

LOOP = " ".join(["again and again"] * 12)


class Scripted:
    """Answers from the last user turn: a reply, a critique of the latest reply, or a
    revision numbered by how many revisions the conversation asked for."""

    description = "scripted"

    def __init__(self) -> None:
        self.calls: list[tuple[int, list[int] | None]] = []

    def generate(self, conversations, max_new_tokens, *, seeds=None, **_) -> list[str]:  # noqa: ANN001, ANN003
        self.calls.append((len(conversations), seeds))
        out = []
        for turns in conversations:
            last = turns[-1].content
            prompt = next(t.content for t in reversed(turns) if t.role == "user"
                          and not t.content.startswith(("Critique", "Revision")))  # fmt: skip
            if last.startswith("Critique request"):
                out.append(f"critique of [{turns[-2].content}]")
            elif last.startswith("Revision request"):
                out.append(LOOP if "loops" in prompt and "rev1" in turns[-4].content
                           else f"rev{1 + ('rev1' in turns[-4].content)} of {prompt}")  # fmt: skip
            else:
                out.append("" if "silent" in prompt else f"answer to {prompt}")
        return out


def test_chains_store_every_step_and_quarantine_degenerate_ones() -> None:
    constitution = load_constitution()
    prompts = [RedTeamPrompt("a", "how to pick a lock"), RedTeamPrompt("b", "silent one"),
               RedTeamPrompt("c", "this one loops"), RedTeamPrompt("d", "steal a car")]  # fmt: skip
    model = Scripted()
    cfg = RevisionConfig(rounds=2, few_shot=True)
    out = run_chains(prompts, constitution, cfg, model, model, model)
    assert len(out.chains) + len(out.drops) == len(prompts)
    assert {d["id"]: d["reason"] for d in out.drops} == {"b": "empty:initial",
                                                         "c": "loop:revision_2"}  # fmt: skip
    assert all(d["stage"] == "cai_revisions" and d["detail"] for d in out.drops)
    chain = next(c for c in out.chains if c["id"] == "a")
    ids = [p.id for p in constitution.critique_revision]
    assert [r["principle_id"] for r in chain["rounds"]] == sample_ids(ids, 2, 0, "a")
    assert chain["initial"] == "answer to how to pick a lock"
    assert chain["rounds"][0]["critique"] == "critique of [answer to how to pick a lock]"
    assert chain["rounds"][0]["revision"] == "rev1 of how to pick a lock"
    assert chain["rounds"][1]["critique"] == "critique of [rev1 of how to pick a lock]"
    assert chain["final"] == chain["rounds"][1]["revision"] == "rev2 of how to pick a lock"
    first = constitution.principle(chain["rounds"][0]["principle_id"])
    assert chain["rounds"][0]["critique_request"] == first.critique
    assert chain["rounds"][0]["revision_request"] == first.revision
    table = pa.Table.from_pylist(out.chains, schema=CHAIN_SCHEMA)  # the stored form
    assert table.num_rows == 2 and table.column("rounds").to_pylist()[0] == chain["rounds"]
    # one batched call per step, the dead chains left out; seeds follow the prompt
    assert [n for n, _ in model.calls] == [4, 3, 3, 3, 3]
    again = Scripted()
    run_chains(prompts[::-1], constitution, cfg, again, again, again)
    assert sorted(again.calls[0][1]) == sorted(model.calls[0][1])


def test_degenerate_generations() -> None:
    cfg = RevisionConfig()
    assert degenerate("   \n", cfg) == "empty"
    assert degenerate(LOOP, cfg) == "loop"
    assert degenerate("no no no no", cfg) is None  # too short to call a loop
    assert degenerate("I can't help with that, but here is a safer idea: " * 1, cfg) is None
