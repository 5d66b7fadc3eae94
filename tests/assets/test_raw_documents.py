"""Materializing ``raw_documents`` for every domain of the demo corpus."""

from pathlib import Path

from dagster import materialize

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
