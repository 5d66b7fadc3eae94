"""The bundled demo corpus, the embedded default: real data, a small config profile."""

from __future__ import annotations

import os
from pathlib import Path

from llmstack_dagster.core.curation.sources import CorpusConfig

DEMO_CORPUS_DIR = Path(__file__).resolve().parents[2] / "demo_corpus"
CORPUS_CONFIG_ENV = "LLMSTACK_CORPUS_CONFIG"


def demo_corpus() -> CorpusConfig:
    """The bundled corpus: every default domain, a few MB."""
    return CorpusConfig.from_yaml(DEMO_CORPUS_DIR / "corpus.yaml")


def load_corpus(path: str | None = None) -> CorpusConfig:
    """The corpus file at ``path`` or ``$LLMSTACK_CORPUS_CONFIG``; the demo corpus otherwise.

    Raises :class:`~llmstack_dagster.core.curation.sources.CorpusConfigError` naming the file,
    and the variable when the path is its value.
    """
    from_env = os.environ.get(CORPUS_CONFIG_ENV) or None
    path = path or from_env
    if not path:
        return demo_corpus()
    origin = f"${CORPUS_CONFIG_ENV}" if path == from_env else None
    return CorpusConfig.from_yaml(path, origin=origin)
