"""The data of constitutional AI: red-team prompts in, SL-CAI conversations and AI-labelled
preference pairs out.

- Red-team prompts: the train side of the red-team split (``eval_sets.red_team_split``: the
  first human turns of the HH-RLHF harmless dialogues; the held-out side is evaluation only, as
  are HarmBench and XSTest).
- SL-CAI conversations: each kept chain as (prompt, final revision): the refusal data of the
  safety training; the borderline-helpful examples of ``constitution/borderline_helpful.yaml``
  (safe requests that only look harmful, with helpful answers, written for this project:
  the guard against over-refusal); and helpful SFT conversations at ``helpful_share`` of the
  whole (Bai et al. 2022 mix helpfulness data in so the model does not learn to refuse all).
- AI-labelled pairs: the preference dataset layout of ``preference_index`` plus a ``label``
  column (the probability that ``chosen`` is the better reply), which the DPO task reads as a
  soft target.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import yaml
from pydantic import BaseModel, TypeAdapter

from llmstack_dagster.core.chat.conversation import Conversation, Turn
from llmstack_dagster.core.chat.render import ChatRenderer, RenderError
from llmstack_dagster.core.chat.sft_build import SeededSplit, Split
from llmstack_dagster.core.evaluation.eval_sets import RED_TEAM_PATH, red_team_split, seeded_subset
from llmstack_dagster.core.posttraining.cai_chains import RedTeamPrompt
from llmstack_dagster.core.posttraining.constitution import DEFAULT_CONSTITUTION
from llmstack_dagster.core.posttraining.preference_build import (
    PreferenceBuildConfig,
    render_pair,
    write_preference_index,
)
from llmstack_dagster.core.posttraining.preference_index import (
    PAIR_SCHEMA,
    PAIR_TEXT_SCHEMA,
    PreferenceIndex,
    PreferenceShard,
)
from llmstack_dagster.core.posttraining.preference_sources import PreferencePair
from llmstack_dagster.core.schema import DROP_SCHEMA, make_drop
from llmstack_dagster.core.storage import OutputVersion, ShardInfo, ShardWriter, Storage

BORDERLINE_FILE = DEFAULT_CONSTITUTION.parent / "borderline_helpful.yaml"
LABELLED_PAIR_SCHEMA = PAIR_SCHEMA.append(pa.field("label", pa.float32(), nullable=False))
PAIRS_STAGE = "ai_preferences"


class BorderlineExample(BaseModel):
    type: str
    prompt: str
    answer: str


def load_borderline(path: Path = BORDERLINE_FILE) -> list[BorderlineExample]:
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return TypeAdapter(list[BorderlineExample]).validate_python(raw)


def red_team_train_prompts(data_dir: Path, count: int | None, seed: int) -> list[RedTeamPrompt]:
    """``count`` prompts (all: None) of the red-team split's train side, seeded."""
    train = red_team_split(Path(data_dir) / RED_TEAM_PATH).train
    prompts = [RedTeamPrompt(f"red-team-train-{i}", text) for i, text in enumerate(train, 1)]
    return seeded_subset(prompts, count, seed)


def _user_assistant(conv_id: str, source: str, prompt: str, answer: str) -> Conversation:
    turns = [Turn(role="user", content=prompt), Turn(role="assistant", content=answer)]
    return Conversation(id=conv_id, source=source, turns=turns)


def sl_cai_conversations(
    chains: Sequence[dict],
    borderline: Sequence[BorderlineExample],
    helpful: Sequence[Conversation],
    helpful_share: float,
    seed: int,
) -> list[Conversation]:
    """The SL-CAI training mix: revisions, borderline-helpful examples, then helpful
    conversations drawn (seeded) to make ``helpful_share`` of the whole, as far as there are."""
    harmless = [_user_assistant(c["id"], "cai_revision", c["prompt"], c["final"]) for c in chains]
    harmless += [_user_assistant(f"borderline-{i}", "borderline_helpful", b.prompt, b.answer)
                 for i, b in enumerate(borderline, 1)]  # fmt: skip
    wanted = round(len(harmless) * helpful_share / (1 - helpful_share)) if helpful_share else 0
    return harmless + seeded_subset(list(helpful), min(wanted, len(helpful)), seed)


def split_conversations(
    conversations: Sequence[Conversation], val_fraction: float, seed: int
) -> Iterator[tuple[Conversation, Split]]:
    """The SFT split rule (``SeededSplit``) per source."""
    by_source: dict[str, list[Conversation]] = {}
    for conv in conversations:
        by_source.setdefault(conv.source, []).append(conv)
    for items in by_source.values():
        splitter: SeededSplit[Conversation] = SeededSplit(val_fraction, seed)
        for conv in items:
            for split, kept in splitter.add(conv.id, conv):
                yield kept, split
        for split, kept in splitter.finish():
            yield kept, split


@dataclass(frozen=True)
class LabelledPair:
    pair: PreferencePair
    label: float  # P(chosen is better), at least 0.5


def write_labelled_pairs(
    storage: Storage,
    version: OutputVersion,
    pairs: Sequence[LabelledPair],
    tokenizer_path: Path,
    config: PreferenceBuildConfig,
) -> tuple[PreferenceIndex, list[ShardInfo], Counter[str]]:
    """Render the pairs into ``version``'s folder (the preference dataset layout with a
    ``label`` column); returns the index, the drop shards and the counts (``in = train + val +
    dropped``)."""
    renderer = ChatRenderer.from_tokenizer(tokenizer_path)
    folder = version.folder
    rows = {s: ShardWriter(storage, posixpath.join(folder, s), LABELLED_PAIR_SCHEMA)
            for s in ("train", "val")}  # fmt: skip
    text = ShardWriter(storage, posixpath.join(folder, "pairs"), PAIR_TEXT_SCHEMA)
    drops = ShardWriter(storage, posixpath.join(folder, "drops"), DROP_SCHEMA)
    counts: Counter[str] = Counter({"in": len(pairs), "train": 0, "val": 0, "dropped": 0})
    splitter: SeededSplit[LabelledPair] = SeededSplit(config.val_fraction, config.seed)

    def write(split: Split, item: LabelledPair) -> None:
        pair = item.pair
        rendered = render_pair(renderer, pair, config)
        if pair.chosen.strip() == pair.rejected.strip():
            rendered = RenderError("identical_replies", "both samples are the same text")
        if isinstance(rendered, RenderError):
            counts["dropped"] += 1
            counts[f"dropped:{rendered.reason}"] += 1
            drops.write_row(make_drop(
                stage=PAIRS_STAGE, domain="cai", source=pair.source, id=pair.id,
                reason=rendered.reason, detail=rendered.detail, sample=pair.prompt[-1].content,
            ))  # fmt: skip
            return
        rows[split].write_row({
            "id": pair.id, "prompt_ids": rendered.prompt_ids, "chosen_ids": rendered.chosen_ids,
            "rejected_ids": rendered.rejected_ids, "label": item.label,
        })  # fmt: skip
        text.write_row({"id": pair.id, "source": pair.source, "split": split,
                        "prompt": [t.model_dump() for t in pair.prompt], "chosen": pair.chosen,
                        "rejected": pair.rejected})  # fmt: skip
        counts[split] += 1

    for item in pairs:
        for split, kept in splitter.add(item.pair.id, item):
            write(split, kept)
    for split, kept in splitter.finish():
        write(split, kept)
    shards = [PreferenceShard(path=posixpath.relpath(info.path, folder), split=split,
                              rows=info.rows)
              for split in ("train", "val") for info in rows[split].close()]  # fmt: skip
    text.close()
    index = write_preference_index(storage, version, renderer, tokenizer_path, config, shards)
    return index, drops.close(), counts
