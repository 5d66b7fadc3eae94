"""``corpus_sources`` (each domain's source files, observed) and ``raw_documents`` (those
sources ingested into document shards), per domain partition."""

import warnings
from collections.abc import Iterator

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    asset,
    observable_source_asset,
)
from pydantic import Field

from llmstack_dagster.assets.common import (
    CURATION_GROUP,
    NIGHTLY_OBSERVATION,
    RECURATE_ON_CHANGE,
    committed_version,
    domain_partitions,
    markdown_table,
    materialization,
    resume_key,
    shard_metadata,
)
from llmstack_dagster.core.curation.duplicate_ids import find_duplicate_ids
from llmstack_dagster.core.curation.ingest import CODE_VERSION as INGEST_CODE_VERSION
from llmstack_dagster.core.curation.ingest import ingest_domain
from llmstack_dagster.core.curation.source_health import (
    DEFAULT_MAX_LOST_SHARE,
    Severity,
    source_health,
)
from llmstack_dagster.core.curation.source_versions import source_data_version
from llmstack_dagster.core.storage import DEFAULT_MAX_SHARD_ROWS, content_version
from llmstack_dagster.profiles import profiled
from llmstack_dagster.resources.corpus import CorpusResource
from llmstack_dagster.resources.shard_map import shard_map_from_env
from llmstack_dagster.resources.storage import StorageResource


@profiled("raw_documents")
class RawDocumentsConfig(Config):
    max_shard_rows: int = DEFAULT_MAX_SHARD_ROWS
    max_lost_share: float = Field(
        default=DEFAULT_MAX_LOST_SHARE,
        ge=0,
        le=1,
        description="a source whose quarantined (or filtered) share exceeds this fails the "
        "sources_yield check; a filter's own max_filtered_share overrides it",
    )


warnings.filterwarnings("ignore", message="Function `observable_source_asset` is currently in beta")


@observable_source_asset(
    partitions_def=domain_partitions,
    group_name=CURATION_GROUP,
    automation_condition=NIGHTLY_OBSERVATION,
    required_resource_keys={"corpus"},
    description="The configured source files of one domain, observed: the data version is a "
    "hash of every file's URL, size and modification time (or ETag) and the source config.",
)
def corpus_sources(context) -> DataVersion:
    domain = context.partition_key
    sources = context.resources.corpus.domain(domain).sources
    versions = [source_data_version(source) for source in sources]
    return DataVersion(content_version("corpus_sources", "1", {}, versions))


@asset(
    code_version=INGEST_CODE_VERSION,
    partitions_def=domain_partitions,
    group_name=CURATION_GROUP,
    automation_condition=RECURATE_ON_CHANGE,
    output_required=False,
    deps=[corpus_sources],
    check_specs=[
        AssetCheckSpec(
            "counts_balance",
            asset="raw_documents",
            description="read = written + quarantined, per source and in the shards",
        ),
        AssetCheckSpec(
            "unique_ids",
            asset="raw_documents",
            description="every document id in the partition is unique",
        ),
        AssetCheckSpec(
            "sources_yield",
            asset="raw_documents",
            description="every source wrote documents, and lost at most max_lost_share of its "
            "records to quarantine or to its filter",
        ),
        AssetCheckSpec(
            "mapped_fields_present",
            asset="raw_documents",
            description="every mapped field path (fields.*, filter.field) was found in records",
        ),
    ],
    description="Documents of one domain, ingested from its configured sources into Parquet "
    "shards with the document schema; undecodable or invalid records go to a quarantine table.",
)
def raw_documents(
    context: AssetExecutionContext,
    config: RawDocumentsConfig,
    storage: StorageResource,
    corpus: CorpusResource,
) -> Iterator[MaterializeResult | AssetCheckResult]:
    domain = context.partition_key
    store = storage.get()
    previous = committed_version(store, "raw_documents", domain)
    domain_config = corpus.domain(domain)
    manifest = ingest_domain(
        store,
        domain,
        domain_config,
        max_shard_rows=config.max_shard_rows,
        shard_map=shard_map_from_env(),
        resume_key=resume_key(context),
    )
    extra = manifest.extra
    context.log.info(f"{domain}: {manifest.counts}")
    result = materialization(context, manifest, previous, lambda: {
        **shard_metadata(store, manifest),
        "created_min": MetadataValue.text(str(extra["created_min"])),
        "created_max": MetadataValue.text(str(extra["created_max"])),
        "per_source": MetadataValue.md(
            markdown_table([{"source": k, **v} for k, v in extra["per_source"].items()])
        ),
        "quarantined_by_reason": MetadataValue.json(extra["quarantine_reasons"]),
        "sample_rows": MetadataValue.md(markdown_table(extra["samples"])),
    })  # fmt: skip
    if result is not None:
        yield result
    per_source_ok = all(
        s["read"] == s["written"] + s["quarantined"] for s in extra["per_source"].values()
    )
    counts = manifest.counts
    total_ok = counts["read"] == counts["written"] + counts["quarantined"]
    yield AssetCheckResult(
        check_name="counts_balance",
        passed=per_source_ok and total_ok,
        metadata={
            "read": counts["read"],
            "written": counts["written"],
            "quarantined": counts["quarantined"],
        },
    )
    duplicates = len(find_duplicate_ids(store, manifest.shards))
    yield AssetCheckResult(
        check_name="unique_ids",
        passed=duplicates == 0,
        severity=AssetCheckSeverity.ERROR,
        metadata={"documents": manifest.rows, "duplicate_ids": duplicates},
    )
    findings = source_health(
        extra["per_source"], domain_config, max_lost_share=config.max_lost_share
    )
    for check_name, severity in (
        ("sources_yield", Severity.ERROR),
        ("mapped_fields_present", Severity.WARNING),
    ):
        found = [f for f in findings if f.severity is severity]
        for finding in found:
            context.log.warning(f"{domain}/{finding.source}: {finding.check}: {finding.message}")
        yield AssetCheckResult(
            check_name=check_name,
            passed=not found,
            severity=AssetCheckSeverity.ERROR if severity is Severity.ERROR
            else AssetCheckSeverity.WARN,
            metadata={"findings": MetadataValue.md(markdown_table(
                [{"source": f.source, "check": f.check, "message": f.message} for f in found]
            ))},
        )  # fmt: skip
