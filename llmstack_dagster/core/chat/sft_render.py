"""Rendering conversations into the SFT dataset the engine trains on.

Each conversation of the train or val split goes through the one renderer
(``render.py``); what cannot be rendered (no assistant turn, a reply truncated away, an
empty mask) becomes a drop row with its reason. The version folder holds the rendered rows
(``sft_index.py``), the conversations as text (for the later stages and for lineage) and the
tokenizer files, so it is self-contained.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmstack_dagster.core.chat.conversation import CONVERSATION_SCHEMA, Conversation
from llmstack_dagster.core.chat.render import ChatRenderer, RenderError
from llmstack_dagster.core.chat.sft_index import (
    RENDERED_SCHEMA,
    SFT_INDEX_FILE,
    SFTIndex,
    SFTShard,
)
from llmstack_dagster.core.schema import DROP_SCHEMA, make_drop
from llmstack_dagster.core.storage import OutputVersion, ShardInfo, ShardWriter, Storage
from llmstack_dagster.core.training.tokenizer import (
    TOKENIZER_CONFIG_FILE,
    load_tokenizer,
    tokenizer_hash,
)

STAGE = "sft_render"
SPLITS = ("train", "val")
LENGTH_BINS = 20


@dataclass
class RenderStats:
    """Per-source counts and token totals of what was rendered."""

    rendered: Counter[str] = field(default_factory=Counter)  # "<source>/<split>"
    dropped: Counter[str] = field(default_factory=Counter)  # "<source>/<reason>"
    tokens: Counter[str] = field(default_factory=Counter)  # split -> tokens
    trained: Counter[str] = field(default_factory=Counter)  # split -> trained tokens
    lengths: list[int] = field(default_factory=list)
    samples: list[tuple[list[int], list[int]]] = field(default_factory=list)


def render_sft_dataset(
    storage: Storage,
    version: OutputVersion,
    conversations: Iterable[tuple[Conversation, str]],
    tokenizer_path: Path,
    max_len: int,
    samples: int = 3,
) -> tuple[SFTIndex, list[ShardInfo], list[ShardInfo], RenderStats]:
    """Render ``(conversation, split)`` pairs into ``version``'s folder.

    Returns the index, the conversation-text shards, the drop shards and the statistics.
    """
    renderer = ChatRenderer.from_tokenizer(tokenizer_path)
    folder = version.folder
    rendered = {s: ShardWriter(storage, posixpath.join(folder, s), RENDERED_SCHEMA) for s in SPLITS}
    text = ShardWriter(storage, posixpath.join(folder, "conversations"), CONVERSATION_SCHEMA)
    drops = ShardWriter(storage, posixpath.join(folder, "drops"), DROP_SCHEMA)
    stats = RenderStats()
    row_tokens: dict[str, list[int]] = {s: [] for s in SPLITS}  # per written row, for shards
    row_trained: dict[str, list[int]] = {s: [] for s in SPLITS}
    for conversation, split in conversations:
        result = renderer.render(conversation, max_len)
        if isinstance(result, RenderError):
            stats.dropped[f"{conversation.source}/{result.reason}"] += 1
            drops.write_row(
                make_drop(
                    stage=STAGE,
                    domain="sft",
                    reason=result.reason,
                    source=conversation.source,
                    id=conversation.id,
                    detail=result.detail or None,
                )
            )
            continue
        rendered[split].write_row(
            {"id": conversation.id, "input_ids": result.input_ids, "loss_mask": result.loss_mask}
        )
        text.write_row(conversation.model_dump())
        stats.rendered[f"{conversation.source}/{split}"] += 1
        row_tokens[split].append(len(result.input_ids))
        row_trained[split].append(sum(result.loss_mask))
        stats.tokens[split] += row_tokens[split][-1]
        stats.trained[split] += row_trained[split][-1]
        stats.lengths.append(len(result.input_ids))
        if split == "val" and len(stats.samples) < samples:
            stats.samples.append((result.input_ids, result.loss_mask))
    shards = []
    for split in SPLITS:  # shards hold the rows in the order they were written
        start = 0
        for info in rendered[split].close():
            rows = slice(start, start + info.rows)
            shards.append(
                SFTShard(
                    path=posixpath.relpath(info.path, folder),
                    split=split,
                    rows=info.rows,
                    tokens=sum(row_tokens[split][rows]),
                    trained_tokens=sum(row_trained[split][rows]),
                )
            )
            start += info.rows
    copy_tokenizer(storage, tokenizer_path, folder)
    index = SFTIndex(
        vocab_size=load_tokenizer(tokenizer_path).get_vocab_size(),
        eos_id=renderer.eos_id,
        pad_id=renderer.pad_id,
        tokenizer_hash=tokenizer_hash(tokenizer_path),
        data_version=version.content_version,
        max_len=max(stats.lengths, default=0),
        shards=shards,
    )
    storage.write_bytes(
        posixpath.join(folder, SFT_INDEX_FILE), index.model_dump_json(indent=2).encode()
    )
    return index, text.close(), drops.close(), stats


def copy_tokenizer(storage: Storage, tokenizer_path: Path, folder: str) -> None:
    """Copy the tokenizer files (``tokenizer.json`` and the HF configs beside it) into
    ``folder``, so a dataset folder is self-contained."""
    source = Path(tokenizer_path)
    source_dir = source.parent if source.is_file() else source
    for name in ("tokenizer.json", TOKENIZER_CONFIG_FILE, "special_tokens_map.json"):
        if (source_dir / name).is_file():
            storage.write_bytes(posixpath.join(folder, name), (source_dir / name).read_bytes())


def marked_sample(renderer_tokenizer, input_ids: list[int], loss_mask: list[int]) -> str:
    """A rendered conversation as text with the trained spans between ⟦ and ⟧."""
    pieces, start = [], 0
    for i in range(1, len(input_ids) + 1):
        if i == len(input_ids) or loss_mask[i] != loss_mask[start]:
            span = renderer_tokenizer.decode(input_ids[start:i], skip_special_tokens=False)
            pieces.append(f"⟦{span}⟧" if loss_mask[start] else span)
            start = i
    return "".join(pieces)


def length_histogram(lengths: list[int]) -> tuple[list[float], list[int]]:
    """Bin edges and counts of the rendered lengths (tokens)."""
    if not lengths:
        return [], []
    counts, edges = np.histogram(lengths, bins=LENGTH_BINS)
    return edges.round(1).tolist(), counts.tolist()
