from pathlib import Path

import pytest
from pydantic import ValidationError

from llmstack_dagster.core.curation.demo import demo_corpus
from llmstack_dagster.core.curation.sources import (
    DEFAULT_DOMAINS,
    CorpusConfig,
    HuggingFaceSource,
    JsonlSource,
    hf_preset,
)


def test_demo_corpus_serves_every_default_domain() -> None:
    corpus = demo_corpus()
    assert set(DEFAULT_DOMAINS) <= set(corpus.domains)
    for domain in corpus.domains.values():
        for source in domain.sources:
            paths = getattr(source, "paths", None) or [getattr(source, "path", "")]
            assert all(Path(p).is_absolute() for p in paths)


def test_yaml_paths_resolve_against_the_file(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "domains:\n  web:\n    sources:\n"
        "      - {name: a, kind: jsonl, paths: [d/x.jsonl], max_docs: 5,"
        " created_after: 2020-01-01T00:00:00Z}\n"
        "      - {name: b, kind: jsonl, paths: ['s3://bucket/x.jsonl']}\n"
    )
    corpus = CorpusConfig.from_yaml(tmp_path / "c.yaml")
    a, b = corpus.domains["web"].sources
    assert isinstance(a, JsonlSource) and a.paths == [str(tmp_path / "d/x.jsonl")]
    assert a.max_docs == 5 and a.created_after.tzinfo is not None
    assert b.paths == ["s3://bucket/x.jsonl"]


def test_source_names_must_be_unique_and_kinds_known() -> None:
    src = {"name": "a", "kind": "jsonl", "paths": ["x"]}
    with pytest.raises(ValidationError, match="unique"):
        CorpusConfig.model_validate({"domains": {"web": {"sources": [src, src]}}})
    with pytest.raises(ValidationError):
        CorpusConfig.model_validate({"domains": {"web": {"sources": [{**src, "kind": "ftp"}]}}})


def test_hf_presets_map_the_seed_datasets() -> None:
    c4 = hf_preset("c4", max_docs=10)
    assert isinstance(c4, HuggingFaceSource)
    assert (c4.dataset, c4.config_name, c4.fields.created, c4.max_docs) == (
        "allenai/c4",
        "en",
        "timestamp",
        10,
    )
    stack = hf_preset("the_stack")
    assert stack.fields.text == "content" and stack.revision == "v1.2"
    assert {"bookcorpus", "cc_news", "arxiv_abstracts"} <= {
        hf_preset(p).name for p in ("bookcorpus", "cc_news", "arxiv_abstracts")
    }
    with pytest.raises(KeyError):
        hf_preset("nope")
