"""Re-materializing with a smaller input leaves no stale shards or removal files behind."""

from __future__ import annotations

import os
from pathlib import Path

from support.documents import write_jsonl

from llmstack_dagster.core.curation.dedup.clusters import find_duplicate_clusters
from llmstack_dagster.core.curation.dedup.config import DedupConfig
from llmstack_dagster.core.curation.dedup.fingerprints import compute_fingerprints
from llmstack_dagster.core.curation.dedup.removal import apply_removals
from llmstack_dagster.core.curation.ingest import ingest_domain
from llmstack_dagster.core.curation.sources import DomainConfig
from llmstack_dagster.core.storage import ShardManifest, Storage

ROWS = 100


def _curate(storage: Storage, corpus: Path) -> list[ShardManifest]:
    source = {"name": "gen", "kind": "jsonl", "paths": [str(corpus)]}
    config = DedupConfig(max_shard_rows=ROWS)
    raw = ingest_domain(
        storage, "web", DomainConfig.model_validate({"sources": [source]}), max_shard_rows=ROWS
    )
    fingerprints = compute_fingerprints(storage, raw, "web", config)
    clusters = find_duplicate_clusters(storage, {"web": fingerprints}, config)
    return [raw, fingerprints, clusters, apply_removals(storage, raw, clusters, "web", config)]


def _files_under(root: Path, rel: str) -> set[str]:
    base = root / rel
    return {
        str(Path(folder, name).relative_to(root))
        for folder, _, names in os.walk(base)
        for name in names
    }


def test_a_smaller_input_leaves_only_the_new_version(tmp_path: Path) -> None:
    root = tmp_path / "store"
    storage = Storage(str(root))
    corpus = write_jsonl(tmp_path / "corpus.jsonl", 1_000)
    with open(corpus, "a", encoding="utf-8") as handle:  # exact duplicates, to be removed
        handle.writelines(line.replace('"id": "doc-', '"id": "copy-')
                          for line in corpus.read_text().splitlines(True)[:30])  # fmt: skip
    big = _curate(storage, corpus)
    assert len(big[0].shards) == 11 and big[2].counts["removed"] == 30

    write_jsonl(corpus, 150)
    small = _curate(storage, corpus)
    assert small[0].rows == 150 and small[2].counts["removed"] == 0
    for manifest in small:
        partition = manifest.folder.rsplit("/", 1)[0]
        listed = {s.path for s in [*manifest.shards, *manifest.drops]}
        # an output with no files (no removals) has no folder at all
        expected = ["manifest.json", manifest.version] if listed else ["manifest.json"]
        assert storage.entries(partition) == expected
        assert _files_under(root, manifest.folder) == listed, manifest.asset
