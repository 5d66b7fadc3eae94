"""The preference dataset: sources -> checked, unique, decontaminated, rendered pairs in a
version folder (layout and row contract in ``preference_index``).

Per pair, in order: quarantine (unreadable or unmappable, see ``preference_sources``), exact
dedup on the normalized (prompt, chosen, rejected) (the first copy is kept), decontamination
(the prompt's turns, the chosen or the rejected reply shares a 13-gram with an eval set: reason
``contaminated:<eval set>``), the seeded held-out split of SFT (``SeededSplit``), then
rendering with the one chat renderer. Every record read is counted once, so per source
``read = quarantined + duplicate + contaminated + dropped + train + val``.

Rendering: ``prompt_ids = renderer.prompt_ids(prompt)``; each reply's ids are what rendering
``prompt + [reply]`` adds after ``prompt_ids`` up to and including the end-of-turn token (a
rendering that does not start with ``prompt_ids`` is dropped as ``template_not_prefix``). A
prompt longer than ``max_prompt_len`` keeps its last ``max_prompt_len`` tokens; a pair whose
prompt and longer reply still exceed ``max_len`` is dropped as ``reply_truncated`` (cutting
would take reply tokens away). See ``references/preference-data.md``.
"""

from __future__ import annotations

import json
import posixpath
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from llmstack_dagster.core.chat.conversation import Conversation, Turn
from llmstack_dagster.core.chat.decontamination import DecontaminationIndex
from llmstack_dagster.core.chat.render import (
    OUR_CHAT_TEMPLATE,
    ChatRenderer,
    OurRenderer,
    RenderError,
)
from llmstack_dagster.core.chat.sft_build import SeededSplit, Split, conversation_key
from llmstack_dagster.core.chat.sft_render import copy_tokenizer
from llmstack_dagster.core.posttraining.preference_index import (
    PAIR_SCHEMA,
    PAIR_TEXT_SCHEMA,
    PREFERENCE_INDEX_FILE,
    PreferenceIndex,
    PreferenceShard,
)
from llmstack_dagster.core.posttraining.preference_sources import (
    DOMAIN,
    PreferenceExample,
    PreferencePair,
    PreferenceSourceConfig,
    read_pairs,
)
from llmstack_dagster.core.schema import DROP_SCHEMA, make_drop
from llmstack_dagster.core.storage import OutputVersion, ShardInfo, ShardWriter, Storage
from llmstack_dagster.core.training.tokenizer import (
    TOKENIZER_CONFIG_FILE,
    load_tokenizer,
    tokenizer_hash,
)

STAGE = "preference_dataset"
SPLITS: tuple[Split, ...] = ("train", "val")
COUNT_KEYS = ("read", "quarantined", "duplicate", "contaminated", "dropped", "train", "val")
SAMPLE_CHARS = 300


class PreferenceBuildConfig(BaseModel):
    """Length limits (TRL's DPOConfig defaults before 1.0: ``max_length=1024``,
    ``max_prompt_length=512``) and the held-out split (as for SFT)."""

    max_len: int = Field(default=1024, ge=2, description="prompt + longer reply, tokens")
    max_prompt_len: int = Field(default=512, ge=1, description="a prompt keeps its last tokens")
    val_fraction: float = Field(default=0.05, ge=0, lt=1)
    seed: int = 0
    samples: int = Field(default=3, ge=0, description="pairs kept as text for metadata")

    @model_validator(mode="after")
    def _room_for_a_reply(self) -> PreferenceBuildConfig:
        if self.max_prompt_len >= self.max_len:
            raise ValueError(
                f"max_prompt_len {self.max_prompt_len} leaves no room for a reply "
                f"in max_len {self.max_len}"
            )
        return self


@dataclass(frozen=True)
class RenderedPair:
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    prompt_cut: int  # tokens cut from the prompt's start


@dataclass
class PreferenceStats:
    """Per-source counts (:data:`COUNT_KEYS` plus ``<key>:<reason>`` details), token totals
    per ``<split>/<part>``, lengths of prompt + longer reply, samples and the data shards."""

    counts: dict[str, Counter[str]] = field(default_factory=dict)
    tokens: Counter[str] = field(default_factory=Counter)
    truncated_prompts: int = 0
    lengths: list[int] = field(default_factory=list)
    samples: list[dict[str, str]] = field(default_factory=list)
    shards: list[ShardInfo] = field(default_factory=list)  # train/, val/, pairs/
    decontamination: dict[str, dict[str, int]] = field(default_factory=dict)

    def unbalanced(self) -> dict[str, tuple[int, int]]:
        """Sources whose ``read`` differs from the sum of outcomes: name -> (read, sum)."""
        out = {}
        for name, c in self.counts.items():
            total = sum(c[k] for k in COUNT_KEYS[1:])
            if total != c["read"]:
                out[name] = (c["read"], total)
        return out


def render_pair(
    renderer: ChatRenderer, pair: PreferencePair, config: PreferenceBuildConfig
) -> RenderedPair | RenderError:
    """The pair's ids under the length rule, or why it has none."""
    fulls = []
    for reply in (pair.chosen, pair.rejected):
        full = renderer.render(
            Conversation(id=pair.id, turns=pair.conversation(reply)), sys.maxsize
        )
        if isinstance(full, RenderError):  # before prompt_ids, which raises on what this names
            return full
        fulls.append(full.input_ids)
    prompt_ids = renderer.prompt_ids(pair.prompt)
    replies = []
    for ids in fulls:
        if ids[: len(prompt_ids)] != prompt_ids:
            return RenderError("template_not_prefix", "the prompt's rendering is not a prefix")
        added = ids[len(prompt_ids) :]
        if renderer.end_turn_id not in added:
            return RenderError("template_not_prefix", "no end-of-turn token after the reply")
        replies.append(added[: added.index(renderer.end_turn_id) + 1])
    cut = max(0, len(prompt_ids) - config.max_prompt_len)
    prompt_ids = prompt_ids[cut:]
    longest = max(len(r) for r in replies)
    if len(prompt_ids) + longest > config.max_len:
        detail = f"prompt {len(prompt_ids)} + reply {longest} tokens > max_len {config.max_len}"
        return RenderError("reply_truncated", detail)
    return RenderedPair(prompt_ids, replies[0], replies[1], cut)


def template_name(renderer: ChatRenderer, tokenizer_path: Path) -> str:
    if isinstance(renderer, OurRenderer):
        return OUR_CHAT_TEMPLATE
    path = Path(tokenizer_path)
    folder = path if path.is_dir() else path.parent
    template = json.loads((folder / TOKENIZER_CONFIG_FILE).read_text()).get("chat_template")
    return template if isinstance(template, str) else json.dumps(template)


def _clip(text: str) -> str:
    return text if len(text) <= SAMPLE_CHARS else text[:SAMPLE_CHARS] + "…"


class _Builder:
    """The writers, the dedup keys and the counts of one build."""

    def __init__(
        self,
        storage: Storage,
        folder: str,
        renderer: ChatRenderer,
        config: PreferenceBuildConfig,
        index: DecontaminationIndex,
    ) -> None:
        self.renderer, self.config, self.index = renderer, config, index
        join = posixpath.join
        self.rows = {s: ShardWriter(storage, join(folder, s), PAIR_SCHEMA) for s in SPLITS}
        self.text = ShardWriter(storage, join(folder, "pairs"), PAIR_TEXT_SCHEMA)
        self.drops = ShardWriter(storage, join(folder, "drops"), DROP_SCHEMA)
        self.seen: dict[int, str] = {}  # (prompt, chosen, rejected) key -> id of the kept copy
        self.stats = PreferenceStats(decontamination=index.summary())

    def source(self, cfg: PreferenceSourceConfig) -> None:
        counts = self.stats.counts.setdefault(cfg.name, Counter(dict.fromkeys(COUNT_KEYS, 0)))
        splitter: SeededSplit[PreferenceExample] = SeededSplit(
            self.config.val_fraction, self.config.seed
        )
        for item in read_pairs(cfg):
            counts["read"] += 1
            if isinstance(item, dict):
                self._count(counts, "quarantined", item["reason"])
                self.drops.write_row(item)
                continue
            if self._filtered(item, counts):
                continue
            for split, example in splitter.add(item.pair.id, item):
                self._render(example, split, counts)
        for split, example in splitter.finish():
            self._render(example, split, counts)

    @staticmethod
    def _count(counts: Counter[str], key: str, reason: str) -> None:
        counts[key] += 1
        counts[f"{key}:{reason}"] += 1

    def _drop(self, ex: PreferenceExample, reason: str, detail: str) -> None:
        pair = ex.pair
        self.drops.write_row(
            make_drop(
                stage=STAGE,
                domain=DOMAIN,
                source=pair.source,
                id=pair.id,
                locator=ex.locator,
                reason=reason,
                detail=detail,
                sample=pair.prompt[-1].content if pair.prompt else None,
            )
        )

    def _filtered(self, ex: PreferenceExample, counts: Counter[str]) -> bool:
        """Drop a duplicate or a contaminated pair; True when dropped."""
        pair = ex.pair
        both = [*pair.prompt, Turn(role="assistant", content=pair.chosen)]
        both.append(Turn(role="assistant", content=pair.rejected))
        key = conversation_key(Conversation(id=pair.id, turns=both))
        if key in self.seen:
            counts["duplicate"] += 1
            self._drop(ex, "duplicate", f"duplicate of {self.seen[key]}")
            return True
        self.seen[key] = pair.id
        prompt = "\n".join(t.content for t in pair.prompt)
        texts = (prompt, pair.chosen, pair.rejected)
        hit = next(filter(None, map(self.index.find, texts)), None)
        if hit is None:
            return False
        self._count(counts, "contaminated", hit.eval_set)
        detail = f"shares a {len(hit.ngram.split())}-gram with {hit.eval_set}: {hit.ngram!r}"
        self._drop(ex, f"contaminated:{hit.eval_set}", detail)
        return True

    def _render(self, ex: PreferenceExample, split: Split, counts: Counter[str]) -> None:
        pair = ex.pair
        result = render_pair(self.renderer, pair, self.config)
        if isinstance(result, RenderError):
            self._count(counts, "dropped", result.reason)
            self._drop(ex, result.reason, result.detail)
            return
        self.rows[split].write_row(
            {
                "id": pair.id,
                "prompt_ids": result.prompt_ids,
                "chosen_ids": result.chosen_ids,
                "rejected_ids": result.rejected_ids,
            }
        )
        prompt = [t.model_dump() for t in pair.prompt]
        text_row = {"id": pair.id, "source": pair.source, "split": split, "prompt": prompt}
        self.text.write_row({**text_row, "chosen": pair.chosen, "rejected": pair.rejected})
        counts[split] += 1
        stats = self.stats
        if result.prompt_cut:
            stats.truncated_prompts += 1
            counts["truncated_prompt"] += 1
        stats.tokens[f"{split}/prompt"] += len(result.prompt_ids)
        stats.tokens[f"{split}/chosen"] += len(result.chosen_ids)
        stats.tokens[f"{split}/rejected"] += len(result.rejected_ids)
        longest = max(len(result.chosen_ids), len(result.rejected_ids))
        stats.lengths.append(len(result.prompt_ids) + longest)
        if len(stats.samples) < self.config.samples:
            stats.samples.append(
                {
                    "id": pair.id,
                    "split": split,
                    "prompt": _clip(pair.prompt[-1].content),
                    "chosen": _clip(pair.chosen),
                    "rejected": _clip(pair.rejected),
                }
            )

    def close(self, folder: str) -> tuple[list[PreferenceShard], list[ShardInfo]]:
        """Close every writer: the index's shards and the drop shards."""
        shards = []
        for split in SPLITS:
            for info in self.rows[split].close():
                rel = posixpath.relpath(info.path, folder)
                shards.append(PreferenceShard(path=rel, split=split, rows=info.rows))
                self.stats.shards.append(info)
        self.stats.shards.extend(self.text.close())
        return shards, self.drops.close()


def build_preference_dataset(
    storage: Storage,
    version: OutputVersion,
    sources: list[PreferenceSourceConfig],
    tokenizer_path: Path,
    config: PreferenceBuildConfig,
    decontamination_index: DecontaminationIndex,
) -> tuple[PreferenceIndex, list[ShardInfo], PreferenceStats]:
    """Read, dedup, decontaminate, split and render every source into ``version``'s folder.

    Returns the index (written last), the drop shards (quarantine and build drops) and the
    statistics (its ``shards`` are the train, val and pair-text shards).
    """
    renderer = ChatRenderer.from_tokenizer(tokenizer_path)
    folder = version.folder
    builder = _Builder(storage, folder, renderer, config, decontamination_index)
    for cfg in sources:
        builder.source(cfg)
    shards, drops = builder.close(folder)
    index = write_preference_index(storage, version, renderer, tokenizer_path, config, shards)
    return index, drops, builder.stats


def write_preference_index(
    storage: Storage,
    version: OutputVersion,
    renderer: ChatRenderer,
    tokenizer_path: Path,
    config: PreferenceBuildConfig,
    shards: list[PreferenceShard],
) -> PreferenceIndex:
    """Copy the tokenizer into the version's folder and write its index last."""
    copy_tokenizer(storage, tokenizer_path, version.folder)
    index = PreferenceIndex(
        vocab_size=load_tokenizer(tokenizer_path).get_vocab_size(),
        eos_id=renderer.eos_id,
        pad_id=renderer.pad_id,
        end_turn_id=renderer.end_turn_id,
        tokenizer_hash=tokenizer_hash(tokenizer_path),
        template=template_name(renderer, tokenizer_path),
        data_version=version.content_version,
        max_len=config.max_len,
        max_prompt_len=config.max_prompt_len,
        shards=shards,
    )
    path = posixpath.join(version.folder, PREFERENCE_INDEX_FILE)
    storage.write_bytes(path, index.model_dump_json(indent=2).encode())
    return index
