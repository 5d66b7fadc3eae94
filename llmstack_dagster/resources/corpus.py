"""Which sources feed each domain: the demo corpus unless a corpus file is configured."""

from __future__ import annotations

import os

from dagster import ConfigurableResource
from pydantic import Field

from llmstack_dagster.core.curation.demo import CORPUS_CONFIG_ENV, load_corpus
from llmstack_dagster.core.curation.sources import CorpusConfig, DomainConfig


class CorpusResource(ConfigurableResource):
    """Path to a corpus YAML file (see ``demo_corpus/corpus.yaml``); empty means the demo."""

    config_path: str = Field(default_factory=lambda: os.environ.get(CORPUS_CONFIG_ENV, ""))

    def corpus(self) -> CorpusConfig:
        return load_corpus(self.config_path or None)

    def domain(self, name: str) -> DomainConfig:
        corpus = self.corpus()
        if name not in corpus.domains:
            raise KeyError(
                f"domain {name!r} has no sources in the corpus config; "
                f"configured domains: {sorted(corpus.domains)}"
            )
        return corpus.domains[name]
