"""Preference sources: JSONL files or streamed Hugging Face datasets mapped onto pairs.

A pair is a shared prompt (every turn before the final reply) and two final assistant replies,
``chosen`` and ``rejected``. Formats:

- ``hh``: ``chosen`` and ``rejected`` are whole HH-RLHF dialogues
  (``"\\n\\nHuman: ...\\n\\nAssistant: ..."``), parsed by :func:`parse_hh_dialogue`.
- ``fields``: dotted paths. ``chosen`` / ``rejected`` hold either the reply text (the prompt
  then comes from ``prompt``: a string is one user turn, a list is messages) or a list of
  ``{role, content}`` messages whose last one is the reply and earlier ones the prompt
  (UltraFeedback binarized); a list holding only the reply takes its prompt from ``prompt``.

Records are read by the curation readers (bad JSON, gzip cuts and an unreachable hub are
reported as for the corpus and SFT sources). Each record becomes a :class:`PreferenceExample`
or a quarantine row of ``DROP_SCHEMA`` whose locator names the file and line. Reasons: the
reader's, ``missing_field``, ``invalid_field``, ``unparsable``, ``no_final_reply``,
``prompt_mismatch``, ``empty_reply``, ``identical_replies``, the prompt checks of
:func:`~llmstack_dagster.core.chat.sources.to_turns` (``invalid_role``, ``empty_content``,
``system_not_first``, ``no_user_turn``, ``invalid_utf8``) and ``conversion_error``.
Ids are ``<source>/<line or row>`` (``<source>/<file>:<line>`` for several files or a glob).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmstack_dagster.core.chat.conversation import Turn
from llmstack_dagster.core.chat.sources import (
    ROLE_ALIASES,
    RawTurns,
    RecordSourceConfig,
    message_turns,
    prefix_file_names,
    quarantine_row,
    record_index,
    required_field,
    to_turns,
)
from llmstack_dagster.core.curation.readers import RawRecord, read_source
from llmstack_dagster.core.curation.records import RecordRejected, is_utf8, preview
from llmstack_dagster.core.curation.sources import (
    FieldPath,
)

STAGE = "preference_sources"
DOMAIN = "preference"
SHARED_HH_FILE = "preference/hh_rlhf_harmless.jsonl.gz"
SHARED_SOURCE_NAME = "hh_rlhf_harmless"
DEMO_MAX_PAIRS = 300
PreferenceFormat = Literal["hh", "fields"]


class PreferencePair(BaseModel):
    """A shared prompt and the two final assistant replies."""

    id: str
    source: str
    prompt: list[Turn]
    chosen: str
    rejected: str

    def conversation(self, reply: str) -> list[Turn]:
        """The prompt followed by ``reply`` as the final assistant turn."""
        return [*self.prompt, Turn(role="assistant", content=reply)]


@dataclass(frozen=True)
class PairError:
    """Why two dialogues make no pair (a quarantine reason and its detail)."""

    reason: str
    detail: str = ""


@dataclass(frozen=True)
class PreferenceExample:
    """One valid pair and where it came from (``<uri>#<locator>``)."""

    pair: PreferencePair
    locator: str


class PreferenceFields(BaseModel):
    """Dotted paths of the native fields; ``prompt`` is for ``format: fields`` only."""

    model_config = ConfigDict(extra="forbid")

    chosen: FieldPath = "chosen"
    rejected: FieldPath = "rejected"
    prompt: FieldPath | None = None


class PreferenceSourceConfig(RecordSourceConfig):
    """One preference source: where its records are and how they map onto pairs."""

    format: PreferenceFormat
    fields: PreferenceFields = PreferenceFields()
    max_pairs: int | None = Field(default=None, ge=1, description="read at most this many")

    @model_validator(mode="after")
    def _consistent(self) -> PreferenceSourceConfig:
        if self.format == "hh" and self.fields.prompt is not None:
            raise ValueError(f"source {self.name!r}: an 'hh' dialogue carries its own prompt")
        return self


# Streamed hub datasets (dataset cards' documented fields):
# - Anthropic/hh-rlhf: ``chosen`` / ``rejected`` whole dialogues; ``data_dir`` picks a subset
#   (harmless-base, helpful-base, helpful-online, helpful-rejection-sampled).
# - HuggingFaceH4/ultrafeedback_binarized, split ``train_prefs``: ``prompt`` (text) and
#   ``chosen`` / ``rejected`` message lists ending with the assistant reply.
PREFERENCE_HF_PRESETS: dict[str, dict[str, object]] = {
    "hh_rlhf": {"dataset": "Anthropic/hh-rlhf", "format": "hh"},
    "hh_rlhf_harmless": {
        "dataset": "Anthropic/hh-rlhf",
        "data_dir": "harmless-base",
        "format": "hh",
    },
    "ultrafeedback_binarized": {
        "dataset": "HuggingFaceH4/ultrafeedback_binarized",
        "split": "train_prefs",
        "format": "fields",
    },
}


def preference_hf_preset(
    preset: str, name: str | None = None, **overrides: object
) -> PreferenceSourceConfig:
    """A streamed Hugging Face preference source from :data:`PREFERENCE_HF_PRESETS`."""
    if preset not in PREFERENCE_HF_PRESETS:
        known = sorted(PREFERENCE_HF_PRESETS)
        raise KeyError(f"unknown preference preset {preset!r}; known: {known}")
    settings = {"kind": "huggingface", **PREFERENCE_HF_PRESETS[preset], "name": name or preset}
    return PreferenceSourceConfig.model_validate({**settings, **overrides})


def shared_preference_sources(
    data_dir: Path, max_pairs: int | None = None
) -> list[PreferenceSourceConfig]:
    """HH-RLHF harmless-base pairs in the shared sample data folder (1,500 pairs)."""
    path = Path(data_dir) / SHARED_HH_FILE
    return [
        PreferenceSourceConfig(
            name=SHARED_SOURCE_NAME,
            kind="jsonl",
            format="hh",
            paths=[str(path)],
            max_pairs=max_pairs,
        )
    ]


def demo_preference_sources(data_dir: Path) -> list[PreferenceSourceConfig]:
    """The demo: the shared HH file capped to :data:`DEMO_MAX_PAIRS` records."""
    return shared_preference_sources(data_dir, DEMO_MAX_PAIRS)


# --- HH-RLHF dialogues -----------------------------------------------------------------------

_HH_LABEL = re.compile(r"\n\n(Human|Assistant):")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}


def parse_hh_dialogue(text: str) -> list[Turn]:
    """The turns of an HH-RLHF dialogue, contents stripped.

    A turn starts at a blank line followed by ``Human:`` or ``Assistant:``; the label
    anywhere else (a reply quoting ``Human:``) is content. Leading whitespace is ignored; the
    final turn may be empty. Raises ``ValueError`` when the text does not start with a Human
    turn or the roles do not alternate.
    """
    if not text.strip():
        raise ValueError("empty dialogue")
    parts = _HH_LABEL.split("\n\n" + text.lstrip())
    if parts[0] or parts[1] != "Human":
        raise ValueError(f"does not start with a 'Human:' turn: {text.lstrip()[:40]!r}")
    turns: list[Turn] = []
    for k, (label, content) in enumerate(zip(parts[1::2], parts[2::2], strict=True)):
        want = "Human" if k % 2 == 0 else "Assistant"
        if label != want:
            raise ValueError(
                f"turn {k} is {label!r} where {want!r} was due: roles do not alternate"
            )
        turns.append(Turn(role=_HH_ROLES[label], content=content.strip()))
    return turns


def hh_pair(
    chosen: str, rejected: str, *, id: str = "", source: str = ""
) -> PreferencePair | PairError:
    """The pair of two HH-RLHF dialogues that share every turn before the final reply."""
    sides: list[RawTurns] = []
    for side, text in (("chosen", chosen), ("rejected", rejected)):
        try:
            turns = parse_hh_dialogue(text)
        except ValueError as err:
            return PairError("unparsable", f"{side}: {err}")
        sides.append([(t.role, t.content) for t in turns])
    return make_pair(sides[0], sides[1], id=id, source=source)


# --- pairs from raw turns ----------------------------------------------------------------------


def _role(role: Any) -> Any:
    return ROLE_ALIASES.get(role, role) if isinstance(role, str) else role


def _normalized(text: str) -> str:
    return " ".join(text.split())


def make_pair(
    chosen: RawTurns, rejected: RawTurns, *, id: str = "", source: str = ""
) -> PreferencePair | PairError:
    """Checks two raw dialogues and returns their pair: each ends with an assistant reply
    (``no_final_reply``), the turns before it are equal (``prompt_mismatch``), the replies are
    non-empty (``empty_reply``) and differ beyond whitespace (``identical_replies``), and the
    prompt is a valid conversation start (the reasons of ``to_turns``)."""
    for side, turns in (("chosen", chosen), ("rejected", rejected)):
        if not turns or _role(turns[-1][0]) != "assistant":
            last = _role(turns[-1][0]) if turns else "nothing"
            return PairError("no_final_reply", f"the {side} side ends with {last!r}, no reply")
    prompt = [(_role(r), c) for r, c in chosen[:-1]]
    other = [(_role(r), c) for r, c in rejected[:-1]]
    if prompt != other:
        pairs = enumerate(zip(prompt, other, strict=False))
        k = next((i for i, (a, b) in pairs if a != b), min(len(prompt), len(other)))
        detail = f"the prompts differ at turn {k} ({len(prompt)} vs {len(other)} turns)"
        return PairError("prompt_mismatch", detail)
    replies = (chosen[-1][1], rejected[-1][1])
    for side, reply in zip(("chosen", "rejected"), replies, strict=True):
        if not isinstance(reply, str):
            return PairError("invalid_field", f"the {side} reply is a {type(reply).__name__}")
        if not reply.strip():
            return PairError("empty_reply", f"the {side} reply is empty")
        if not is_utf8(reply):
            return PairError("invalid_utf8", f"the {side} reply has a lone surrogate")
    if _normalized(replies[0]) == _normalized(replies[1]):
        return PairError("identical_replies", "chosen and rejected say the same")
    try:
        turns = to_turns([*prompt, ("assistant", replies[0])])
    except RecordRejected as rej:
        return PairError(rej.reason, rej.detail)
    return PreferencePair(
        id=id, source=source, prompt=turns[:-1], chosen=replies[0], rejected=replies[1]
    )


def _text_field(record: dict[str, Any], path: str) -> str:
    value = required_field(record, path)
    if not isinstance(value, str):
        detail = f"field {path!r} is a {type(value).__name__}, not a string"
        raise RecordRejected("invalid_field", detail, preview(record))
    return value


def _prompt_turns(record: dict[str, Any], path: str | None) -> RawTurns:
    if path is None:
        detail = "a reply without its own prompt turns needs a 'prompt' field"
        raise RecordRejected("missing_field", detail, preview(record))
    value = required_field(record, path)
    if isinstance(value, str):
        return [("user", value)]
    return message_turns(record, path)


def _side(record: dict[str, Any], path: str, prompt_path: str | None) -> RawTurns:
    """One side's dialogue: a reply text after the prompt field, or a message list."""
    value = required_field(record, path)
    if isinstance(value, str):
        return [*_prompt_turns(record, prompt_path), ("assistant", value)]
    turns = message_turns(record, path)
    if len(turns) == 1 and prompt_path is not None:
        return [*_prompt_turns(record, prompt_path), *turns]
    return turns


def map_record(
    record: dict[str, Any], cfg: PreferenceSourceConfig, id: str
) -> PreferencePair | PairError:
    """A native record as a pair; missing or mistyped fields raise ``RecordRejected``."""
    fields = cfg.fields
    if cfg.format == "hh":
        chosen, rejected = _text_field(record, fields.chosen), _text_field(record, fields.rejected)
        return hh_pair(chosen, rejected, id=id, source=cfg.name)
    chosen_turns = _side(record, fields.chosen, fields.prompt)
    rejected_turns = _side(record, fields.rejected, fields.prompt)
    return make_pair(chosen_turns, rejected_turns, id=id, source=cfg.name)


# --- reading -----------------------------------------------------------------------------------


def _quarantine(
    cfg: PreferenceSourceConfig,
    where: str,
    reason: str,
    detail: str | None,
    sample: Any = None,
    id: str | None = None,
) -> dict[str, Any]:
    return quarantine_row(cfg.name, where, reason, detail, sample, id, stage=STAGE, domain=DOMAIN)


def _convert(cfg: PreferenceSourceConfig, raw: RawRecord, pair_id: str) -> PreferenceExample | dict:
    where = f"{raw.uri}#{raw.locator}"
    if raw.error is not None:
        return _quarantine(cfg, where, raw.error, raw.detail, raw.sample)
    record = raw.record or {}
    try:
        result = map_record(record, cfg, pair_id)
    except RecordRejected as rej:
        return _quarantine(cfg, where, rej.reason, rej.detail, rej.sample, pair_id)
    except Exception as err:  # a record no check foresaw must not abort the source
        detail = f"{type(err).__name__}: {err}"
        return _quarantine(cfg, where, "conversion_error", detail, preview(record), pair_id)
    if isinstance(result, PairError):
        return _quarantine(cfg, where, result.reason, result.detail, preview(record), pair_id)
    return PreferenceExample(result, where)


def read_pairs(cfg: PreferenceSourceConfig) -> Iterator[PreferenceExample | dict[str, Any]]:
    """Every record of the source as a :class:`PreferenceExample` or a quarantine row, at most
    ``max_pairs`` records; an unreadable source raises ``SourceError`` naming it."""
    prefix_file = prefix_file_names(cfg.paths)
    for n, raw in enumerate(read_source(cfg.reader_source()), start=1):
        yield _convert(cfg, raw, f"{cfg.name}/{record_index(raw, prefix_file)}")
        if cfg.max_pairs is not None and n >= cfg.max_pairs:
            return
