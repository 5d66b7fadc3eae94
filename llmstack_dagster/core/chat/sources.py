"""SFT sources: JSONL files or streamed Hugging Face datasets mapped onto conversations.

A source names how its records become turns: a ``mapping`` preset (:data:`MAPPINGS`) or
explicit ``fields`` (user, assistant, optional system and context). Records are read by the
curation readers (so bad JSON, gzip cuts and an unreachable hub are reported the same way) and
every example becomes a :class:`Example` or a quarantine row of ``DROP_SCHEMA`` whose locator
names the file and line (``<uri>#line:<n>``). Reasons: the reader's (``malformed_json``...),
``missing_field``, ``invalid_field``, ``invalid_role``, ``empty_content``, ``system_not_first``,
``no_user_turn``, ``no_assistant_turn``, ``no_instances``, ``invalid_utf8``,
``conversion_error``.

Ids are ``<source>/<line or row>`` (``.<k>`` for the k-th Self-Instruct instance); a source
with several files or a glob prefixes the file name: ``<source>/<file>:<line>``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmstack_dagster.core.chat.conversation import Conversation, Turn
from llmstack_dagster.core.curation.readers import RawRecord, read_source
from llmstack_dagster.core.curation.records import (
    RecordRejected,
    clean_utf8,
    get_field,
    is_utf8,
    preview,
)
from llmstack_dagster.core.curation.sources import (
    FieldPath,
    HuggingFaceSource,
    JsonlSource,
    SourceName,
)
from llmstack_dagster.core.schema import SAMPLE_CHARS, make_drop

STAGE = "sft_sources"
DEMO_SFT_DIR = Path(__file__).resolve().parents[2] / "demo_corpus" / "sft"
DEMO_SFT_FILES = (
    "t0_prompt_completion.jsonl.gz",
    "self_instruct_seed_tasks.jsonl.gz",
    "gsm8k_train.jsonl.gz",
)
DOMAIN = "sft"
ROLES = ("system", "user", "assistant")
ROLE_ALIASES = {"human": "user", "gpt": "assistant", "prompter": "user"}
MappingName = Literal["prompt_completion", "self_instruct", "gsm8k", "messages", "dolly", "chatml"]
RawTurns = list[tuple[str, Any]]


class FieldNames(BaseModel):
    """Explicit single-exchange mapping: dotted paths of the native fields."""

    model_config = ConfigDict(extra="forbid")

    user: FieldPath
    assistant: FieldPath
    system: FieldPath | None = None
    context: FieldPath | None = Field(
        default=None, description="appended to the user turn after a blank line when present"
    )


class RecordSourceConfig(BaseModel):
    """Where a source's records are: JSON Lines files, or a Hugging Face dataset streamed
    with ``datasets`` (the SFT and preference sources share it)."""

    model_config = ConfigDict(extra="forbid")

    name: SourceName
    kind: Literal["jsonl", "huggingface"]
    paths: list[str] = Field(default_factory=list)
    dataset: str | None = None
    config_name: str | None = None
    data_dir: str | None = None
    split: str = "train"
    revision: str | None = None

    @model_validator(mode="after")
    def _located(self) -> RecordSourceConfig:
        if self.kind == "jsonl" and not self.paths:
            raise ValueError(f"source {self.name!r}: a jsonl source needs 'paths'")
        if self.kind == "huggingface" and not self.dataset:
            raise ValueError(f"source {self.name!r}: a huggingface source needs 'dataset'")
        return self

    def reader_source(self) -> JsonlSource | HuggingFaceSource:
        """The curation source its records are read through."""
        if self.kind == "jsonl":
            return JsonlSource(name=self.name, paths=self.paths)
        return HuggingFaceSource(
            name=self.name,
            dataset=self.dataset or "",
            config_name=self.config_name,
            data_dir=self.data_dir,
            split=self.split,
            revision=self.revision,
        )

    def resolved(self, base_dir: Path) -> Self:
        """A copy whose relative local paths are made absolute against ``base_dir``."""
        paths = [
            p if "://" in p or Path(p).is_absolute() else str(base_dir / p) for p in self.paths
        ]
        return self.model_copy(update={"paths": paths})


class SFTSourceConfig(RecordSourceConfig):
    """One SFT source: where its records are and how they map onto turns."""

    mapping: MappingName | None = None
    fields: FieldNames | None = None
    max_examples: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> SFTSourceConfig:
        if (self.mapping is None) == (self.fields is None):
            raise ValueError(f"source {self.name!r}: give exactly one of 'mapping' or 'fields'")
        return self


# Streamed hub datasets (dataset cards' documented fields):
# - SmolTalk, UltraChat 200k: ``messages`` = [{role, content}, ...] (UltraChat's SFT split is
#   ``train_sft``).
# - Dolly 15k: ``instruction``, ``context`` (often empty), ``response``.
# - OpenAssistant: ``OpenAssistant/oasst_top1_2023-08-25``, the highest-ranked reply path of
#   each oasst1 tree already flattened into one ``text`` field in ChatML
#   (``<|im_start|>user\n...<|im_end|>``), far simpler than rebuilding oasst1's message trees.
SFT_HF_PRESETS: dict[str, dict[str, object]] = {
    "smoltalk": {"dataset": "HuggingFaceTB/smoltalk", "config_name": "all", "mapping": "messages"},
    "ultrachat_200k": {
        "dataset": "HuggingFaceH4/ultrachat_200k",
        "split": "train_sft",
        "mapping": "messages",
    },
    "dolly_15k": {"dataset": "databricks/databricks-dolly-15k", "mapping": "dolly"},
    "oasst_top1": {"dataset": "OpenAssistant/oasst_top1_2023-08-25", "mapping": "chatml"},
}


def sft_hf_preset(preset: str, name: str | None = None, **overrides: object) -> SFTSourceConfig:
    """A streamed Hugging Face SFT source from :data:`SFT_HF_PRESETS`."""
    if preset not in SFT_HF_PRESETS:
        raise KeyError(f"unknown SFT preset {preset!r}; known: {sorted(SFT_HF_PRESETS)}")
    settings = {"kind": "huggingface", **SFT_HF_PRESETS[preset], "name": name or preset}
    return SFTSourceConfig.model_validate({**settings, **overrides})


def local_sft_sources(t0: Path, self_instruct: Path, gsm8k_train: Path) -> list[SFTSourceConfig]:
    """The three local sources: T0 prompt/completion, Self-Instruct seeds, GSM8K train."""
    files = {
        "t0": (t0, "prompt_completion"),
        "self_instruct": (self_instruct, "self_instruct"),
        "gsm8k_train": (gsm8k_train, "gsm8k"),
    }
    return [
        SFTSourceConfig(name=name, kind="jsonl", paths=[str(path)], mapping=mapping)
        for name, (path, mapping) in files.items()
    ]


def shared_sft_sources(data_dir: Path) -> list[SFTSourceConfig]:
    """The local sources in the shared sample data folder."""
    d = Path(data_dir)
    return local_sft_sources(
        d / "sft/t0_prompt_completion.jsonl",
        d / "sft/self_instruct_seed_tasks.jsonl",
        d / "eval/gsm8k/train.jsonl",
    )


def demo_sft_sources() -> list[SFTSourceConfig]:
    """The bundled demo subset (``demo_corpus/sft``, see its ATTRIBUTION.md)."""
    return local_sft_sources(*(DEMO_SFT_DIR / name for name in DEMO_SFT_FILES))


# --- mappings: one native record -> the raw turns of one or more conversations ------------


def required_field(record: dict[str, Any], path: str) -> Any:
    """The value at a dotted path; ``missing_field`` when it is absent or null."""
    value = get_field(record, path)
    if value is None:
        raise RecordRejected("missing_field", f"field {path!r} is missing", preview(record))
    return value


def _with_context(user: Any, context: Any) -> Any:
    if isinstance(user, str) and isinstance(context, str) and context.strip():
        return f"{user}\n\n{context}"
    return user


def map_fields(record: dict[str, Any], fields: FieldNames) -> list[RawTurns]:
    """One exchange from explicit field names."""
    turns: RawTurns = []
    if fields.system and get_field(record, fields.system) not in (None, ""):
        turns.append(("system", get_field(record, fields.system)))
    user = required_field(record, fields.user)
    context = get_field(record, fields.context) if fields.context else None
    turns.append(("user", _with_context(user, context)))
    turns.append(("assistant", required_field(record, fields.assistant)))
    return [turns]


def map_self_instruct(record: dict[str, Any]) -> list[RawTurns]:
    """One conversation per instance: user = instruction (+ input when present)."""
    instruction = required_field(record, "instruction")
    instances = required_field(record, "instances")
    if not isinstance(instances, list) or not instances:
        raise RecordRejected("no_instances", "field 'instances' is not a non-empty list")
    out: list[RawTurns] = []
    for k, inst in enumerate(instances):
        if not isinstance(inst, dict):
            detail = f"instances[{k}] is a {type(inst).__name__}, not an object"
            raise RecordRejected("invalid_field", detail, preview(record))
        user = _with_context(instruction, inst.get("input"))
        out.append([("user", user), ("assistant", inst.get("output"))])
    return out


def message_turns(record: dict[str, Any], path: str) -> RawTurns:
    """The raw turns of a list of ``{role, content}`` objects at ``path``."""
    messages = required_field(record, path)
    if not isinstance(messages, list):
        detail = f"field {path!r} is a {type(messages).__name__}, not a list"
        raise RecordRejected("invalid_field", detail, preview(record))
    turns: RawTurns = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise RecordRejected("invalid_field", f"{path}[{i}] is not an object", preview(record))
        turns.append((msg.get("role"), msg.get("content")))
    return turns


def map_messages(record: dict[str, Any]) -> list[RawTurns]:
    """A ``messages`` list of ``{role, content}`` objects (SmolTalk, UltraChat)."""
    return [message_turns(record, "messages")]


_CHATML = re.compile(r"<\|im_start\|>(\w+)\n(.*?)(?:<\|im_end\|>|\Z)", re.S)


def map_chatml(record: dict[str, Any]) -> list[RawTurns]:
    """A ChatML ``text`` field (OpenAssistant top-1 threads)."""
    text = required_field(record, "text")
    if not isinstance(text, str):
        raise RecordRejected("invalid_field", "field 'text' is not a string", preview(record))
    turns: RawTurns = [(role, content.strip()) for role, content in _CHATML.findall(text)]
    if not turns:
        raise RecordRejected("invalid_field", "no <|im_start|> turn in field 'text'", text)
    return [turns]


PRESET_FIELDS: dict[str, FieldNames] = {
    "prompt_completion": FieldNames(user="prompt", assistant="completion"),
    "gsm8k": FieldNames(user="question", assistant="answer"),
    "dolly": FieldNames(user="instruction", context="context", assistant="response"),
}
MAPPINGS: dict[str, Callable[[dict[str, Any]], list[RawTurns]]] = {
    "self_instruct": map_self_instruct,
    "messages": map_messages,
    "chatml": map_chatml,
    **{name: (lambda r, f=f: map_fields(r, f)) for name, f in PRESET_FIELDS.items()},
}


# --- validation ----------------------------------------------------------------------------


def to_turns(raw: RawTurns) -> list[Turn]:
    """Checked turns: known roles, non-empty UTF-8 strings, system first, a user and an
    assistant turn; else :class:`RecordRejected`."""
    turns: list[Turn] = []
    for i, (role, content) in enumerate(raw):
        role = ROLE_ALIASES.get(role, role) if isinstance(role, str) else role
        if role not in ROLES:
            raise RecordRejected("invalid_role", f"turn {i} has role {role!r}; want {ROLES}")
        if not isinstance(content, str):
            detail = f"turn {i} ({role}) content is a {type(content).__name__}, not a string"
            raise RecordRejected("invalid_field", detail)
        if not content.strip():
            raise RecordRejected("empty_content", f"turn {i} ({role}) is empty")
        if not is_utf8(content):
            raise RecordRejected("invalid_utf8", f"turn {i} ({role}) has a lone surrogate")
        if role == "system" and i > 0:
            raise RecordRejected("system_not_first", f"turn {i} is a system turn")
        turns.append(Turn(role=role, content=content))
    roles = {t.role for t in turns}
    if "user" not in roles:
        raise RecordRejected("no_user_turn", "the conversation has no user turn")
    if "assistant" not in roles:
        raise RecordRejected("no_assistant_turn", "nothing for the model to learn")
    return turns


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One valid conversation and where it came from (``<uri>#<locator>``)."""

    conversation: Conversation
    locator: str


def quarantine_row(
    source: str,
    locator: str,
    reason: str,
    detail: str | None,
    sample: Any = None,
    id: str | None = None,
    stage: str = STAGE,
    domain: str = DOMAIN,
) -> dict[str, Any]:
    """A ``DROP_SCHEMA`` row for an example that cannot be used (every string UTF-8 safe)."""
    if isinstance(sample, str):
        sample = clean_utf8(sample[:SAMPLE_CHARS])
    return make_drop(
        stage=stage,
        domain=domain,
        source=source,
        id=clean_utf8(id),
        locator=clean_utf8(locator),
        reason=reason,
        detail=clean_utf8(detail),
        sample=sample,
    )


def prefix_file_names(paths: list[str]) -> bool:
    """Whether ids name the file too: several paths, or a glob."""
    return len(paths) > 1 or any(c in p for p in paths for c in "*?[")


def record_index(raw: RawRecord, prefix_file: bool) -> str:
    """The record's line or row number, prefixed with its file name when ``prefix_file``."""
    index = raw.locator.split(":", 1)[-1]
    return f"{raw.uri.rsplit('/', 1)[-1]}:{index}" if prefix_file else index


def _conversions(cfg: SFTSourceConfig, raw: RawRecord, base_id: str) -> Iterator[Example | dict]:
    where = f"{raw.uri}#{raw.locator}"
    if raw.error is not None:
        yield quarantine_row(cfg.name, where, raw.error, raw.detail, raw.sample)
        return
    record = raw.record or {}
    mapper = MAPPINGS[cfg.mapping] if cfg.mapping else None
    try:
        convs = mapper(record) if mapper else map_fields(record, cfg.fields)  # type: ignore[arg-type]
    except RecordRejected as rej:
        yield quarantine_row(cfg.name, where, rej.reason, rej.detail, rej.sample, base_id)
        return
    except Exception as err:  # a record no check foresaw must not abort the source
        detail = f"{type(err).__name__}: {err}"
        yield quarantine_row(cfg.name, where, "conversion_error", detail, preview(record), base_id)
        return
    many = cfg.mapping == "self_instruct"
    for k, turns in enumerate(convs):
        cid, loc = (f"{base_id}.{k}", f"{where}/instance:{k}") if many else (base_id, where)
        try:
            conv = Conversation(id=cid, source=cfg.name, turns=to_turns(turns))
        except RecordRejected as rej:
            yield quarantine_row(cfg.name, loc, rej.reason, rej.detail, preview(record), cid)
            continue
        yield Example(conv, loc)


def read_examples(cfg: SFTSourceConfig) -> Iterator[Example | dict[str, Any]]:
    """Every example of the source: an :class:`Example` or a quarantine row, at most
    ``max_examples`` in all; an unreadable source raises ``SourceError`` naming it."""
    prefix_file = prefix_file_names(cfg.paths)
    produced = 0
    for raw in read_source(cfg.reader_source()):
        base_id = f"{cfg.name}/{record_index(raw, prefix_file)}"
        for item in _conversions(cfg, raw, base_id):
            yield item
            produced += 1
            if cfg.max_examples is not None and produced >= cfg.max_examples:
                return
