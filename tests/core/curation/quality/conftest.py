"""Session fixtures: one reference LM (KenLM + SentencePiece + quality classifier) trained on
the even half of the real wiki, books and web samples; the odd half stays unseen for tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from filelock import FileLock
from quality_data import (
    book_texts,
    halves,
    web_texts,
    wiki_texts,
    write_docs,
)

from llmstack_dagster.core.curation.quality.attributes.training import AttributeTrainingConfig
from llmstack_dagster.core.curation.quality.reference_lm import (
    ReferenceLM,
    ReferenceLMConfig,
    reference_lm_of,
    train_reference_lm,
)
from llmstack_dagster.core.storage import ShardManifest, Storage

TEST_LM_CONFIG = ReferenceLMConfig(
    vocab_size=4000,
    reference_sample_docs=160,
    web_sample_docs=160,
    classifier=AttributeTrainingConfig(),
)


@pytest.fixture(scope="session")
def lm_storage(tmp_path_factory: pytest.TempPathFactory) -> Storage:
    return Storage(str(tmp_path_factory.mktemp("quality") / "store"))


def _train(storage: Storage, shared_data: Path) -> ShardManifest:
    reference = {
        "wiki": write_docs(storage, "dedup", "wiki", halves(wiki_texts(shared_data))[0]),
        "books": write_docs(storage, "dedup", "books", halves(book_texts(shared_data))[0]),
    }
    web = write_docs(storage, "dedup", "web", halves(web_texts(shared_data))[0])
    return train_reference_lm(storage, reference, web, TEST_LM_CONFIG)


@pytest.fixture(scope="session")
def reference_manifest(
    lm_storage: Storage,
    shared_data: Path,
    tmp_path_factory: pytest.TempPathFactory,
    worker_id: str,
) -> ShardManifest:
    """Trained once a test run: under pytest-xdist the first worker to get here trains it
    into a folder the run's workers share (under a file lock), and each copies it."""
    if worker_id == "master":
        return _train(lm_storage, shared_data)
    run = os.environ["PYTEST_XDIST_TESTRUNUID"]
    shared = tmp_path_factory.getbasetemp().parent / f"reference-lm-{run}"
    with FileLock(f"{shared}.lock"):
        if not (shared / "manifest.json").is_file():
            manifest = _train(Storage(str(shared / "store")), shared_data)
            (shared / "manifest.json").write_text(manifest.model_dump_json())
    shutil.copytree(shared / "store", lm_storage.root, dirs_exist_ok=True)
    return ShardManifest.model_validate_json((shared / "manifest.json").read_text())


@pytest.fixture(scope="session")
def reference_lm(reference_manifest: ShardManifest) -> ReferenceLM:
    return reference_lm_of(reference_manifest)
