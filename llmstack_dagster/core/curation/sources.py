"""Typed source configuration: where each domain's documents come from.

A corpus is a set of domains; a domain lists its sources. Every source kind maps its native
records onto the document schema through a :class:`FieldMapping` (dotted paths reach nested
fields such as ``metadata.pile_set_name``), caps how many documents it reads (``max_docs``),
and filters on a ``created`` date window. Provenance (source, file or dataset, record locator)
is written into every document's metadata.

Domain and source names match :data:`NAME_PATTERN` (domain names become storage folders).
:meth:`CorpusConfig.from_yaml` rejects duplicate YAML keys and reports every mistake as one
:class:`CorpusConfigError` naming the file and the key path (``domains.web.sources.0.paths``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

DEFAULT_DOMAINS = ("web", "books", "code", "news", "academic", "wiki")
DEFAULT_MAX_DOC_BYTES = 16 * 1024 * 1024
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
FIELD_ROLES = ("id", "created", "url", "language")
_NAME_RE = re.compile(NAME_PATTERN)


class CorpusConfigError(ValueError):
    """A corpus file that cannot be used; the message names the file and the key."""


def _check_name(value: str, what: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise ValueError(
            f"{what} name {value!r} must match {NAME_PATTERN} "
            "(letters, digits, '_' and '-', not starting with '_' or '-')"
        )
    return value


def _domain_name(value: str) -> str:
    return _check_name(value, "domain")


def _source_name(value: str) -> str:
    return _check_name(value, "source")


def _field_path(value: str) -> str:
    if not value or any(not part for part in value.split(".")):
        raise ValueError(f"field path {value!r} must be dotted non-empty names, e.g. 'meta.date'")
    return value


DomainName = Annotated[str, AfterValidator(_domain_name)]
SourceName = Annotated[str, AfterValidator(_source_name)]
FieldPath = Annotated[str, AfterValidator(_field_path)]


class FieldMapping(BaseModel):
    """Native record fields (dotted paths) that fill the document schema."""

    model_config = ConfigDict(extra="forbid")

    text: FieldPath = "text"
    id: FieldPath | None = "id"
    created: FieldPath | None = None
    url: FieldPath | None = None
    language: FieldPath | None = None


class RecordFilter(BaseModel):
    """Keep only records whose field (dotted path) has one of ``values``."""

    model_config = ConfigDict(extra="forbid")

    field: FieldPath
    values: list[str] = Field(min_length=1)
    max_filtered_share: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="share of records the filter may drop before source health is an error "
        "(default: the health check's maximum lost share)",
    )


class SourceBase(BaseModel):
    """Settings shared by every source kind."""

    model_config = ConfigDict(extra="forbid")

    name: SourceName
    max_docs: int | None = Field(default=None, ge=1)
    created_after: datetime | None = None
    created_before: datetime | None = None
    default_created: datetime = Field(
        default=datetime(2020, 1, 1, tzinfo=UTC),
        description="creation time for records that carry none (e.g. the corpus release date)",
    )
    language: str | None = None
    max_doc_bytes: int = Field(default=DEFAULT_MAX_DOC_BYTES, ge=1)

    @field_validator("created_after", "created_before", "default_created")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        try:
            return value.astimezone(UTC)
        except OverflowError as err:
            raise ValueError(f"{value.isoformat()} is out of range in UTC") from err

    @field_validator("created_before")
    @classmethod
    def _window(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        after = info.data.get("created_after")
        if value is not None and after is not None and after >= value:
            raise ValueError(
                f"created_before ({value.isoformat()}) must be later than "
                f"created_after ({after.isoformat()})"
            )
        return value


class JsonlSource(SourceBase):
    """JSON Lines files, optionally ``.gz`` or ``.zst`` compressed (fsspec URLs or globs)."""

    kind: Literal["jsonl"] = "jsonl"
    paths: list[str] = Field(min_length=1)
    fields: FieldMapping = FieldMapping()
    filter: RecordFilter | None = None


class ParquetSource(SourceBase):
    """Parquet files (fsspec URLs or globs)."""

    kind: Literal["parquet"] = "parquet"
    paths: list[str] = Field(min_length=1)
    fields: FieldMapping = FieldMapping()
    filter: RecordFilter | None = None


class TextDirSource(SourceBase):
    """A folder of plain-text files, one document per file; the id is the relative path."""

    kind: Literal["text_dir"] = "text_dir"
    path: str = Field(min_length=1)
    pattern: str = Field(default="**/*.txt", min_length=1)


class WarcSource(SourceBase):
    """WARC(.gz) files; HTML responses become text through trafilatura's main-content extraction."""

    kind: Literal["warc"] = "warc"
    paths: list[str] = Field(min_length=1)
    include_comments: bool = False
    include_tables: bool = True


class HuggingFaceSource(SourceBase):
    """A Hugging Face dataset, streamed with ``datasets.load_dataset(..., streaming=True)``."""

    kind: Literal["huggingface"] = "huggingface"
    dataset: str = Field(min_length=1)
    config_name: str | None = None
    data_dir: str | None = None
    data_files: list[str] | None = None
    split: str = "train"
    revision: str | None = None
    fields: FieldMapping = FieldMapping()
    filter: RecordFilter | None = None


SourceConfig = Annotated[
    JsonlSource | ParquetSource | TextDirSource | WarcSource | HuggingFaceSource,
    Field(discriminator="kind"),
]
SOURCE_KINDS = frozenset({"jsonl", "parquet", "text_dir", "warc", "huggingface"})


def mapped_fields(source: SourceBase) -> dict[str, str]:
    """Role -> path of the schema fields (id, created, url, language) the source maps.

    Only roles that are configured count: given explicitly, or (``id``) changed from the
    default. The default ``id: id`` falls back to content-hash ids silently by design.
    """
    fields: FieldMapping | None = getattr(source, "fields", None)
    if fields is None:
        return {}
    defaults = FieldMapping()
    mapped = {}
    for role in FIELD_ROLES:
        path = getattr(fields, role)
        explicit = role in fields.model_fields_set or path != getattr(defaults, role)
        if path is not None and explicit:
            mapped[role] = path
    return mapped


class DomainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sources: list[SourceConfig] = Field(min_length=1)

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[SourceBase]) -> list[SourceBase]:
        names = [s.name for s in sources]
        if len(names) != len(set(names)):
            raise ValueError(f"source names must be unique within a domain: {names}")
        return sources


class CorpusConfig(BaseModel):
    """All domains of a corpus, keyed by domain name."""

    model_config = ConfigDict(extra="forbid")

    domains: dict[DomainName, DomainConfig] = Field(min_length=1)

    @field_validator("domains")
    @classmethod
    def _distinct_folders(cls, domains: dict[str, DomainConfig]) -> dict[str, DomainConfig]:
        lowered = [name.lower() for name in domains]
        if len(lowered) != len(set(lowered)):
            raise ValueError(
                f"domain names must differ in more than letter case: {sorted(domains)}"
            )
        return domains

    @classmethod
    def from_yaml(
        cls,
        path: str | Path,
        base_dir: str | Path | None = None,
        *,
        origin: str | None = None,
    ) -> CorpusConfig:
        """Load a corpus file; relative local paths resolve against ``base_dir`` (its folder).

        Every mistake raises :class:`CorpusConfigError` naming the file (and ``origin``, where
        the path came from, e.g. an environment variable) and the offending key.
        """
        path = Path(path)
        where = f"corpus config {str(path)!r}" + (f" (from {origin})" if origin else "")
        raw = _load_yaml_mapping(path, where)
        try:
            corpus = cls.model_validate(raw)
        except ValidationError as err:
            raise CorpusConfigError(_validation_message(where, err)) from None
        return corpus.resolved(Path(base_dir) if base_dir else path.parent)

    def resolved(self, base_dir: Path) -> CorpusConfig:
        """A copy whose relative local paths are made absolute against ``base_dir``."""

        def fix(p: str) -> str:
            return p if "://" in p or Path(p).is_absolute() else str((base_dir / p).resolve())

        domains = {}
        for name, domain in self.domains.items():
            sources = []
            for src in domain.sources:
                update: dict[str, object] = {}
                if hasattr(src, "paths"):
                    update["paths"] = [fix(p) for p in src.paths]
                if isinstance(src, TextDirSource):
                    update["path"] = fix(src.path)
                sources.append(src.model_copy(update=update))
            domains[name] = DomainConfig(sources=sources)
        return CorpusConfig(domains=domains)


class UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that rejects a key repeated within one mapping."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, yaml.Mark] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, str | int | float | bool | None):
                    continue  # unhashable keys: the base constructor reports them
                if key in first:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {key!r} (first defined at line {first[key].line + 1})",
                        key_node.start_mark,
                    )
                first[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _load_yaml_mapping(path: Path, where: str) -> dict[str, Any]:
    """The file's top-level mapping; every failure names ``where``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CorpusConfigError(f"{where}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CorpusConfigError(f"{where}: cannot read the file: {err}") from None
    try:
        raw = yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as err:
        raise CorpusConfigError(f"{where}: invalid YAML: {_yaml_problem(err)}") from None
    if raw is None:
        raise CorpusConfigError(f"{where}: the file is empty; it needs a 'domains:' mapping")
    if not isinstance(raw, dict):
        raise CorpusConfigError(
            f"{where}: the top level must be a mapping with a 'domains:' key, "
            f"not a {type(raw).__name__}"
        )
    return raw


def _yaml_problem(err: yaml.YAMLError) -> str:
    if not isinstance(err, yaml.MarkedYAMLError):
        return str(err)
    mark = err.problem_mark or err.context_mark
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    context = f" {err.context}" if err.context and err.problem != err.context else ""
    return f"{err.problem}{at}{context}".strip()


def _validation_message(where: str, err: ValidationError) -> str:
    lines = [f"{where}: {err.error_count()} invalid setting(s):"]
    for error in err.errors():
        key = _key_path(error["loc"])
        got = error.get("input")
        if error["type"] == "value_error":  # our own validators name the value already
            message, shown = error["msg"].removeprefix("Value error, "), ""
        else:
            message = error["msg"]
            shown = f" (got {got!r})" if _is_scalar(got) and error["type"] != "missing" else ""
        lines.append(f"  {key}: {message}{shown}")
    return "\n".join(lines)


def _key_path(loc: tuple[int | str, ...]) -> str:
    """``domains.web.sources.0.max_doc_bytes``: the union's kind tag left out."""
    parts: list[str] = []
    for i, part in enumerate(loc):
        is_tag = i >= 2 and loc[i - 2] == "sources" and isinstance(loc[i - 1], int)
        if is_tag and part in SOURCE_KINDS:
            continue
        if part == "[key]":
            parts[-1] += " (the key)"
            continue
        parts.append(str(part))
    return ".".join(parts) or "(top level)"


def _is_scalar(value: object) -> bool:
    return isinstance(value, str | int | float | bool | datetime) or value is None


# Presets for the seed's public datasets: field mappings for their hub layouts.
HF_PRESETS: dict[str, dict[str, object]] = {
    "c4": {
        "dataset": "allenai/c4",
        "config_name": "en",
        "fields": {"text": "text", "id": None, "created": "timestamp", "url": "url"},
        "language": "en",
    },
    "bookcorpus": {
        "dataset": "bookcorpus/bookcorpus",
        "fields": {"text": "text", "id": None},
        "language": "en",
    },
    "the_stack": {
        "dataset": "bigcode/the-stack",
        "revision": "v1.2",
        "data_dir": "data/python",
        "fields": {"text": "content", "id": "hexsha", "language": "lang"},
    },
    "cc_news": {
        "dataset": "vblagoje/cc_news",
        "fields": {"text": "text", "id": None, "created": "date", "url": "url"},
        "language": "en",
    },
    "arxiv_abstracts": {
        "dataset": "gfissore/arxiv-abstracts-2021",
        "fields": {"text": "abstract", "id": "id"},
        "language": "en",
    },
}


def hf_preset(preset: str, name: str | None = None, **overrides: object) -> HuggingFaceSource:
    """A streamed Hugging Face source from one of :data:`HF_PRESETS`."""
    if preset not in HF_PRESETS:
        raise KeyError(f"unknown Hugging Face preset {preset!r}; known: {sorted(HF_PRESETS)}")
    settings = {**HF_PRESETS[preset], "name": name or preset, **overrides}
    return HuggingFaceSource.model_validate(settings)
