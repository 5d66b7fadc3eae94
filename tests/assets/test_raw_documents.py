"""Materializing ``raw_documents`` for every domain of the demo corpus; a re-execution of a
failed run resumes it."""

from pathlib import Path

from dagster import DagsterInstance, Definitions, in_process_executor, materialize
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.execution.api import execute_run
from support.documents import write_jsonl
from support.resume import FailOnce

from llmstack_dagster.assets.common import domain_partitions
from llmstack_dagster.assets.raw_documents import raw_documents
from llmstack_dagster.core.curation import ingest
from llmstack_dagster.core.curation.demo import load_corpus
from llmstack_dagster.core.curation.readers import source_files
from llmstack_dagster.core.storage import Storage, read_manifest, resume_suffix
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


def test_a_reexecution_resumes_the_files_of_its_root_run(tmp_path: Path, monkeypatch) -> None:
    spy = FailOnce(ingest.ingest_file)
    monkeypatch.setattr(ingest, "ingest_file", spy)
    resources = {
        "storage": StorageResource(root=str(tmp_path / "store")),
        "corpus": CorpusResource(config_path=""),
    }
    job = Definitions(
        assets=[raw_documents], resources=resources, executor=in_process_executor
    ).resolve_implicit_global_asset_job_def()
    with DagsterInstance.ephemeral() as instance:
        failed = job.execute_in_process(partition_key="books", instance=instance,
                                        raise_on_error=False)  # fmt: skip
        assert not failed.success and spy.calls == 2
        spy.retry()
        parent = instance.get_run_by_id(failed.run_id)
        retry = instance.create_run_for_job(
            job_def=job, run_config=parent.run_config, tags=parent.tags,
            parent_run_id=parent.run_id, root_run_id=parent.run_id,
        )  # fmt: skip
        assert execute_run(InMemoryJob(job), retry, instance).success
    (books,) = load_corpus(None).domains["books"].sources
    assert spy.calls == len(source_files(books)) - 1  # the text files the failed run had not read
    manifest = read_manifest(Storage(str(tmp_path / "store")), "raw_documents", "books")
    assert manifest.version.endswith(resume_suffix(manifest.content_version, failed.run_id))
