"""Typed source configuration: where each domain's documents come from.

A corpus is a set of domains; a domain lists its sources. Every source kind maps its native
records onto the document schema through a :class:`FieldMapping` (dotted paths reach nested
fields such as ``metadata.pile_set_name``), caps how many documents it reads (``max_docs``),
and filters on a ``created`` date window. Provenance (source, file or dataset, record locator)
is written into every document's metadata.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_DOMAINS = ("web", "books", "code", "news", "academic", "wiki")
DEFAULT_MAX_DOC_BYTES = 16 * 1024 * 1024


class FieldMapping(BaseModel):
    """Native record fields (dotted paths) that fill the document schema."""

    model_config = ConfigDict(extra="forbid")

    text: str = "text"
    id: str | None = "id"
    created: str | None = None
    url: str | None = None
    language: str | None = None


class RecordFilter(BaseModel):
    """Keep only records whose field (dotted path) has one of ``values``."""

    model_config = ConfigDict(extra="forbid")

    field: str
    values: list[str]


class SourceBase(BaseModel):
    """Settings shared by every source kind."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    max_docs: int | None = Field(default=None, ge=1)
    created_after: datetime | None = None
    created_before: datetime | None = None
    default_created: datetime = Field(
        default=datetime(2020, 1, 1, tzinfo=UTC),
        description="creation time for records that carry none (e.g. the corpus release date)",
    )
    language: str | None = None
    max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES

    @field_validator("created_after", "created_before", "default_created")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class JsonlSource(SourceBase):
    """JSON Lines files, optionally ``.gz`` or ``.zst`` compressed (fsspec URLs or globs)."""

    kind: Literal["jsonl"] = "jsonl"
    paths: list[str]
    fields: FieldMapping = FieldMapping()
    filter: RecordFilter | None = None


class ParquetSource(SourceBase):
    """Parquet files (fsspec URLs or globs)."""

    kind: Literal["parquet"] = "parquet"
    paths: list[str]
    fields: FieldMapping = FieldMapping()
    filter: RecordFilter | None = None


class TextDirSource(SourceBase):
    """A folder of plain-text files, one document per file; the id is the relative path."""

    kind: Literal["text_dir"] = "text_dir"
    path: str
    pattern: str = "**/*.txt"


class WarcSource(SourceBase):
    """WARC(.gz) files; HTML responses become text through trafilatura's main-content extraction."""

    kind: Literal["warc"] = "warc"
    paths: list[str]
    include_comments: bool = False
    include_tables: bool = True


class HuggingFaceSource(SourceBase):
    """A Hugging Face dataset, streamed with ``datasets.load_dataset(..., streaming=True)``."""

    kind: Literal["huggingface"] = "huggingface"
    dataset: str
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


class DomainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sources: list[SourceConfig]

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

    domains: dict[str, DomainConfig]

    @classmethod
    def from_yaml(cls, path: str | Path, base_dir: str | Path | None = None) -> CorpusConfig:
        """Load a corpus file; relative local paths resolve against ``base_dir`` (its folder)."""
        path = Path(path)
        raw = yaml.safe_load(path.read_text())
        corpus = cls.model_validate(raw)
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
