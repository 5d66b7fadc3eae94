"""Critique and revision chains (the SL-CAI phase of Bai et al. 2022).

For each red-team prompt the generator answers; then each of ``rounds`` rounds (default 2, at
most 4 as in the paper) asks the critic to critique the latest reply under a critique request of
the constitution, and the reviser to rewrite it under the matching revision request. Each
prompt's principles are drawn with a generator seeded by ``(seed, prompt id)``, distinct within
a chain. The constitution's few-shot examples precede every request.

A generation that is empty or loops (:func:`degenerate`) ends its chain: the chain becomes a
drop row whose reason names the step (``empty:initial``, ``loop:revision_2``, ...), so per run
``prompts = chains + quarantined``. Chains are rows of :data:`CHAIN_SCHEMA`.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, Field

from llmstack_dagster.core.chat.conversation import Turn
from llmstack_dagster.core.posttraining.chat_models import ChatModel
from llmstack_dagster.core.posttraining.constitution import (
    Constitution,
    CritiqueRevision,
    sample_ids,
)
from llmstack_dagster.core.schema import make_drop

STAGE = "cai_revisions"
DOMAIN = "cai"
ROUND_TYPE = pa.struct(
    [
        pa.field("principle_id", pa.string(), nullable=False),
        pa.field("critique_request", pa.string(), nullable=False),
        pa.field("critique", pa.string(), nullable=False),
        pa.field("revision_request", pa.string(), nullable=False),
        pa.field("revision", pa.string(), nullable=False),
    ]
)
CHAIN_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("initial", pa.string(), nullable=False),
        pa.field("rounds", pa.list_(ROUND_TYPE), nullable=False),
        pa.field("final", pa.string(), nullable=False),
    ]
)


class RevisionConfig(BaseModel):
    """Rounds of critique and revision (the paper: up to 4), generation lengths, and what
    counts as a loop: at least ``loop_min_words`` words of which fewer than
    ``loop_min_distinct`` of the word ``loop_ngram``-grams are distinct."""

    rounds: int = Field(default=2, ge=1, le=4)
    few_shot: bool = True
    max_new_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int = 0
    loop_ngram: int = Field(default=4, ge=1)
    loop_min_words: int = Field(default=20, ge=1)
    loop_min_distinct: float = Field(default=0.3, gt=0.0, le=1.0)


@dataclass(frozen=True)
class RedTeamPrompt:
    id: str
    text: str
    source: str = "hh_rlhf_harmless"


def degenerate(text: str, cfg: RevisionConfig) -> str | None:
    """``"empty"``, ``"loop"`` or None for a usable generation."""
    words = text.split()
    if not words:
        return "empty"
    n = cfg.loop_ngram
    if len(words) >= max(cfg.loop_min_words, n):
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        if len(set(grams)) / len(grams) < cfg.loop_min_distinct:
            return "loop"
    return None


def critique_turns(
    prompt: str, reply: str, principle: CritiqueRevision, constitution: Constitution, few_shot: bool
) -> list[Turn]:
    """The conversation that asks for a critique of ``reply`` under ``principle``."""
    turns: list[Turn] = []
    for ex in constitution.few_shot.critique_revision if few_shot else []:
        turns += [
            Turn(role="user", content=ex.prompt),
            Turn(role="assistant", content=ex.answer),
            Turn(role="user", content=f"Critique request: {principle.critique}"),
            Turn(role="assistant", content=ex.critique),
            Turn(role="user", content=f"Revision request: {principle.revision}"),
            Turn(role="assistant", content=ex.revision),
        ]
    return [
        *turns,
        Turn(role="user", content=prompt),
        Turn(role="assistant", content=reply),
        Turn(role="user", content=f"Critique request: {principle.critique}"),
    ]


def revision_turns(
    critique_conversation: list[Turn], critique: str, principle: CritiqueRevision
) -> list[Turn]:
    """The critique conversation, the critique, and the revision request."""
    return [
        *critique_conversation,
        Turn(role="assistant", content=critique),
        Turn(role="user", content=f"Revision request: {principle.revision}"),
    ]


@dataclass
class ChainOutcome:
    chains: list[dict[str, Any]] = field(default_factory=list)
    drops: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Chain:
    prompt: RedTeamPrompt
    principles: list[CritiqueRevision]
    initial: str = ""
    current: str = ""
    rounds: list[dict[str, str]] = field(default_factory=list)


def step_seed(seed: int, prompt_id: str, step: str) -> int:
    """A sampling seed per prompt and step, independent of the batch."""
    return seed * 1_000_003 + zlib.crc32(f"{prompt_id}/{step}".encode())


def run_chains(
    prompts: Sequence[RedTeamPrompt],
    constitution: Constitution,
    cfg: RevisionConfig,
    generator: ChatModel,
    critic: ChatModel,
    reviser: ChatModel,
) -> ChainOutcome:
    """Every prompt's chain, or its drop row; each step is one batched call for all chains."""
    ids = [p.id for p in constitution.critique_revision]
    outcome = ChainOutcome()

    def ask(
        model: ChatModel, chains: list[_Chain], asked: list[list[Turn]], step: str
    ) -> list[tuple[_Chain, str]]:
        """The usable generations; a degenerate one ends its chain as a drop row."""
        seeds = [step_seed(cfg.seed, c.prompt.id, step) for c in chains]
        texts = model.generate(asked, cfg.max_new_tokens, temperature=cfg.temperature,
                               top_p=cfg.top_p, seeds=seeds)  # fmt: skip
        kept = []
        for chain, text in zip(chains, texts, strict=True):
            reason = degenerate(text, cfg)
            if reason is None:
                kept.append((chain, text))
                continue
            outcome.drops.append(make_drop(
                stage=STAGE, domain=DOMAIN, reason=f"{reason}:{step}", source=chain.prompt.source,
                id=chain.prompt.id, detail=f"{model.description} gave {reason} output at {step}",
                sample=text or chain.prompt.text,
            ))  # fmt: skip
        return kept

    chains = [
        _Chain(p, [constitution.principle(i) for i in sample_ids(ids, cfg.rounds, cfg.seed, p.id)])
        for p in prompts
    ]
    asked = [[Turn(role="user", content=c.prompt.text)] for c in chains]
    answered = ask(generator, chains, asked, "initial")
    for chain, text in answered:
        chain.initial = chain.current = text
    alive = [c for c, _ in answered]
    for r in range(cfg.rounds):
        critique_asks = [critique_turns(c.prompt.text, c.current, c.principles[r], constitution,
                                        cfg.few_shot) for c in alive]  # fmt: skip
        asked_of = {id(c): q for c, q in zip(alive, critique_asks, strict=True)}
        critiqued = ask(critic, alive, critique_asks, f"critique_{r + 1}")
        revise = [(c, revision_turns(asked_of[id(c)], text, c.principles[r]))
                  for c, text in critiqued]  # fmt: skip
        critique_of = {id(c): text for c, text in critiqued}
        revised = ask(reviser, [c for c, _ in revise], [q for _, q in revise], f"revision_{r + 1}")
        for chain, revision in revised:
            principle = chain.principles[r]
            chain.rounds.append({
                "principle_id": principle.id, "critique_request": principle.critique,
                "critique": critique_of[id(chain)], "revision_request": principle.revision,
                "revision": revision,
            })  # fmt: skip
            chain.current = revision
        alive = [c for c, _ in revised]
    outcome.chains = [
        {"id": c.prompt.id, "source": c.prompt.source, "prompt": c.prompt.text,
         "initial": c.initial, "rounds": c.rounds, "final": c.current}
        for c in alive
    ]  # fmt: skip
    return outcome
