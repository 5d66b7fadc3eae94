"""Materializing ``raw_documents`` for every domain of the demo corpus."""

from pathlib import Path

from dagster import materialize
from support.documents import write_jsonl

from llmstack_dagster.assets.common import domain_partitions
from llmstack_dagster.assets.raw_documents import raw_documents
from llmstack_dagster.core.storage import Storage, read_manifest
from llmstack_dagster.resources.corpus import CorpusResource
from llmstack_dagster.resources.storage import StorageResource


def test_every_domain_materializes_with_passing_checks(tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    resources = {"storage": StorageResource(root=root), "corpus": CorpusResource(config_path="")}
    for domain in domain_partitions.get_partition_keys():
        result = materialize([raw_documents], partition_key=domain, resources=resources)
        assert result.success
        (mat,) = result.asset_materializations_for_node("raw_documents")
        meta = mat.metadata
        assert meta["rows"].value > 0, domain
        counts = meta["counts"].value
        assert counts["read"] == counts["written"] + counts["quarantined"]
        assert "| id |" in meta["sample_rows"].value
        checks = result.get_asset_check_evaluations()
        assert {c.check_name: c.passed for c in checks} == {
            "counts_balance": True,
            "unique_ids": True,
            "sources_yield": True,
            "mapped_fields_present": True,
        }
        manifest = read_manifest(Storage(root), "raw_documents", domain)
        assert manifest.rows == meta["rows"].value


def test_unchanged_sources_materialize_nothing_and_a_touched_file_does(tmp_path: Path) -> None:
    corpus_file = write_jsonl(tmp_path / "web.jsonl", 30)
    config = tmp_path / "corpus.yaml"
    config.write_text(
        "domains:\n  web:\n    sources:\n"
        f"      - {{name: gen, kind: jsonl, paths: ['{corpus_file}']}}\n"
    )
    resources = {
        "storage": StorageResource(root=str(tmp_path / "store")),
        "corpus": CorpusResource(config_path=str(config)),
    }

    def run() -> tuple[int, list[str]]:
        result = materialize([raw_documents], partition_key="web", resources=resources)
        assert result.success
        checks = [c.check_name for c in result.get_asset_check_evaluations() if c.passed]
        return len(result.asset_materializations_for_node("raw_documents")), checks

    first, _ = run()
    again, checks = run()
    assert (first, again) == (1, 0)
    assert sorted(checks) == ["counts_balance", "mapped_fields_present", "sources_yield",
                              "unique_ids"]  # fmt: skip
    write_jsonl(corpus_file, 31)  # the file changed: a new content version
    touched, _ = run()
    assert touched == 1
    assert read_manifest(Storage(str(tmp_path / "store")), "raw_documents", "web").rows == 31
