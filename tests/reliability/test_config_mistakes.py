"""Corpus-file mistakes are one clear CorpusConfigError naming the file and the key."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from llmstack_dagster.core.curation.demo import CORPUS_CONFIG_ENV, demo_corpus, load_corpus
from llmstack_dagster.core.curation.sources import (
    NAME_PATTERN,
    CorpusConfig,
    CorpusConfigError,
)

SOURCE = "{name: a, kind: jsonl, paths: [x.jsonl]}"


def config_error(tmp_path: Path, text: str) -> str:
    """The message of the error that loading ``text`` as a corpus file raises."""
    path = tmp_path / "corpus.yaml"
    path.write_text(text)
    with pytest.raises(CorpusConfigError) as info:
        CorpusConfig.from_yaml(path)
    message = str(info.value)
    assert f"'{path}'" in message
    assert info.value.__cause__ is None  # no raw pydantic or yaml traceback chained
    return message


def one_source(**settings: str) -> str:
    """A corpus of one jsonl source in domain ``web`` with extra ``key: value`` settings."""
    extra = "".join(f"        {k}: {v}\n" for k, v in settings.items())
    return (
        "domains:\n  web:\n    sources:\n      - name: a\n        kind: jsonl\n"
        f"        paths: [x.jsonl]\n{extra}"
    )


@pytest.mark.parametrize("domain", ["web/2024", "..", "_web", "-web", "web.2024", "web 2", "wéb"])
def test_domain_names_that_are_not_plain_folder_names_are_rejected(
    tmp_path: Path, domain: str
) -> None:
    message = config_error(tmp_path, f"domains:\n  '{domain}':\n    sources: [{SOURCE}]\n")
    assert f"domains.{domain} (the key):" in message
    assert f"domain name {domain!r} must match {NAME_PATTERN}" in message


def test_plain_domain_and_source_names_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "corpus.yaml"
    path.write_text(
        "domains:\n"
        "  web-2024: {sources: [{name: Cc_Net-1, kind: jsonl, paths: [x.jsonl]}]}\n"
        "  Web_2: {sources: [{name: '0a', kind: jsonl, paths: [x.jsonl]}]}\n"
    )
    corpus = CorpusConfig.from_yaml(path)
    assert sorted(corpus.domains) == ["Web_2", "web-2024"]


@pytest.mark.parametrize("name", ["a.b", "../a", "a/b", "_a", ""])
def test_source_names_with_dots_slashes_or_leading_underscore_are_rejected(
    tmp_path: Path, name: str
) -> None:
    message = config_error(tmp_path, one_source().replace("name: a", f"name: '{name}'"))
    assert f"domains.web.sources.0.name: source name {name!r} must match" in message


def test_domains_differing_only_in_case_are_rejected(tmp_path: Path) -> None:
    text = f"domains:\n  web: {{sources: [{SOURCE}]}}\n  WEB: {{sources: [{SOURCE}]}}\n"
    message = config_error(tmp_path, text)
    assert "domains: domain names must differ in more than letter case" in message


def test_a_repeated_domain_key_names_the_key_and_both_lines(tmp_path: Path) -> None:
    text = (
        "domains:\n"
        f"  web:\n    sources: [{SOURCE}]\n"
        f"  books:\n    sources: [{SOURCE}]\n"
        f"  web:\n    sources: [{{name: b, kind: jsonl, paths: [y.jsonl]}}]\n"
    )
    message = config_error(tmp_path, text)
    assert "invalid YAML: duplicate key 'web' (first defined at line 2) at line 6" in message


def test_a_repeated_key_inside_a_source_is_rejected(tmp_path: Path) -> None:
    message = config_error(tmp_path, one_source(max_docs="5") + "        max_docs: 50\n")
    assert "duplicate key 'max_docs' (first defined at line 7) at line 8" in message


def test_yaml_merge_keys_may_still_override_merged_values(tmp_path: Path) -> None:
    path = tmp_path / "corpus.yaml"
    path.write_text(
        "domains:\n  web:\n    sources:\n"
        "      - &base {name: a, kind: jsonl, paths: [x.jsonl], max_docs: 5}\n"
        "      - {<<: *base, name: b, max_docs: 7}\n"
    )
    a, b = CorpusConfig.from_yaml(path).domains["web"].sources
    assert (a.name, a.max_docs, b.name, b.max_docs) == ("a", 5, "b", 7)


def test_empty_sources_and_empty_domains_are_errors(tmp_path: Path) -> None:
    message = config_error(tmp_path, "domains:\n  web:\n    sources: []\n")
    assert "domains.web.sources: List should have at least 1 item" in message
    message = config_error(tmp_path, "domains: {}\n")
    assert "domains: Dictionary should have at least 1 item" in message
    message = config_error(tmp_path, "domains:\n")
    assert "domains: Input should be a valid dictionary (got None)" in message
    message = config_error(tmp_path, one_source().replace("paths: [x.jsonl]", "paths: []"))
    assert "domains.web.sources.0.paths: List should have at least 1 item" in message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("max_doc_bytes", "-1", "Input should be greater than or equal to 1 (got -1)"),
        ("max_doc_bytes", "0", "Input should be greater than or equal to 1 (got 0)"),
        ("max_docs", "0", "Input should be greater than or equal to 1 (got 0)"),
        ("max_docs", "-5", "Input should be greater than or equal to 1 (got -5)"),
    ],
)
def test_sizes_must_be_positive(tmp_path: Path, key: str, value: str, expected: str) -> None:
    message = config_error(tmp_path, one_source(**{key: value}))
    assert f"domains.web.sources.0.{key}: {expected}" in message


def test_the_key_path_counts_sources_and_leaves_out_the_kind(tmp_path: Path) -> None:
    text = (
        "domains:\n  web:\n    sources:\n"
        f"      - {SOURCE}\n"
        "      - {name: b, kind: parquet, paths: [y.parquet], max_doc_bytes: -1}\n"
    )
    message = config_error(tmp_path, text)
    assert "1 invalid setting(s):\n  domains.web.sources.1.max_doc_bytes:" in message


@pytest.mark.parametrize(
    ("after", "before"),
    [("2024-01-01T00:00:00Z", "2023-01-01T00:00:00Z"), ("2024-01-01", "2024-01-01")],
)
def test_an_empty_date_window_is_an_error(tmp_path: Path, after: str, before: str) -> None:
    message = config_error(tmp_path, one_source(created_after=after, created_before=before))
    assert "domains.web.sources.0.created_before: created_before (" in message
    assert "must be later than created_after (2" in message


def test_a_date_out_of_range_in_utc_is_an_error(tmp_path: Path) -> None:
    message = config_error(tmp_path, one_source(default_created="9999-12-31T23:59:59-05:00"))
    assert "domains.web.sources.0.default_created: 9999-12-31T23:59:59-05:00 is out" in message
    assert "is out of range in UTC" in message


def test_a_filter_needs_values_and_a_real_path(tmp_path: Path) -> None:
    message = config_error(tmp_path, one_source(filter="{field: meta.lang, values: []}"))
    assert "domains.web.sources.0.filter.values: List should have at least 1 item" in message
    message = config_error(tmp_path, one_source(filter="{field: 'meta..lang', values: [en]}"))
    assert "domains.web.sources.0.filter.field: field path 'meta..lang'" in message
    message = config_error(tmp_path, one_source(fields="{text: body, created: ''}"))
    assert "domains.web.sources.0.fields.created: field path ''" in message


def test_typos_and_unknown_kinds_name_their_key(tmp_path: Path) -> None:
    message = config_error(tmp_path, one_source(max_doc="5"))
    assert "domains.web.sources.0.max_doc: Extra inputs are not permitted (got 5)" in message
    message = config_error(tmp_path, one_source().replace("kind: jsonl", "kind: ftp"))
    assert "domains.web.sources.0: Input tag 'ftp' found using 'kind'" in message
    message = config_error(tmp_path, "domain:\n  web: {}\n")
    assert "domains: Field required" in message and "domain: Extra inputs" in message


def test_several_mistakes_are_reported_together(tmp_path: Path) -> None:
    message = config_error(tmp_path, one_source(max_docs="0", max_doc_bytes="-1"))
    assert "2 invalid setting(s)" in message
    assert "sources.0.max_docs:" in message and "sources.0.max_doc_bytes:" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file is empty; it needs a 'domains:' mapping"),
        ("# only a comment\n", "the file is empty"),
        ("- web\n- books\n", "the top level must be a mapping with a 'domains:' key, not a list"),
        ("just words\n", "the top level must be a mapping with a 'domains:' key, not a str"),
        ("domains:\n  web: [unclosed\n", "invalid YAML: "),
        ("domains:\n\tweb: {}\n", "invalid YAML: found character '\\t'"),
    ],
)
def test_unusable_files_name_the_path(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in config_error(tmp_path, text)


def test_yaml_syntax_errors_give_the_line(tmp_path: Path) -> None:
    message = config_error(tmp_path, "domains:\n  web:\n    sources: [{name: a\n")
    assert "invalid YAML:" in message and "line 4" in message


def test_a_missing_file_named_by_the_variable_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nope" / "corpus.yaml"
    monkeypatch.setenv(CORPUS_CONFIG_ENV, str(missing))
    with pytest.raises(CorpusConfigError) as info:
        load_corpus()
    assert str(info.value) == (
        f"corpus config '{missing}' (from ${CORPUS_CONFIG_ENV}): file not found"
    )


def test_a_bad_file_named_by_the_variable_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "corpus.yaml"
    path.write_text(one_source(max_docs="0"))
    monkeypatch.setenv(CORPUS_CONFIG_ENV, str(path))
    with pytest.raises(CorpusConfigError) as info:
        load_corpus()
    message = str(info.value)
    assert message.startswith(f"corpus config '{path}' (from ${CORPUS_CONFIG_ENV}): 1 invalid")
    assert "domains.web.sources.0.max_docs:" in message


def test_an_explicit_path_does_not_blame_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CORPUS_CONFIG_ENV, raising=False)
    missing = tmp_path / "corpus.yaml"
    with pytest.raises(CorpusConfigError) as info:
        load_corpus(str(missing))
    assert str(info.value) == f"corpus config '{missing}': file not found"
    monkeypatch.setenv(CORPUS_CONFIG_ENV, "")
    assert set(load_corpus().domains) == set(demo_corpus().domains)  # empty means the demo


def test_a_folder_instead_of_a_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CorpusConfigError, match="cannot read the file"):
        CorpusConfig.from_yaml(tmp_path)


def test_the_error_is_a_value_error_not_a_validation_error(tmp_path: Path) -> None:
    path = tmp_path / "corpus.yaml"
    path.write_text(one_source(max_docs="0"))
    with pytest.raises(ValueError) as info:
        CorpusConfig.from_yaml(path)
    assert isinstance(info.value, CorpusConfigError)
    assert not isinstance(info.value, ValidationError)


def test_the_bundled_corpus_still_validates() -> None:
    corpus = demo_corpus()
    assert len(corpus.domains) == 6
    assert sum(len(d.sources) for d in corpus.domains.values()) == 11
