"""The curation engine as a resource: per-shard stages and the dedup shuffle run on it.

Interchangeable like the training resource: ``definitions.py`` picks the backend from
``LLMSTACK_SHARD_MAP`` (``local``, the default; ``ray``; ``modal``), with
``LLMSTACK_SHARD_MAP_WORKERS`` workers and, when ``LLMSTACK_DEDUP_SHUFFLE_PARTITIONS`` is set,
``duplicate_clusters`` as a shuffle over that many partitions. The Ray backend connects
through a ``dagster-ray`` resource (``LocalRay`` here; ``RAY_ADDRESS`` points it at a running
cluster), see ``references/scale-out.md``.
"""

import os

from dagster import ConfigurableResource
from dagster_ray import LocalRay, RayResource
from pydantic import Field

from llmstack_dagster.core.curation.dedup.shuffle_dedup import ShuffleConfig
from llmstack_dagster.core.dispatch.modal_app import ModalSpec
from llmstack_dagster.core.scale.modal_backend import ModalShardMap
from llmstack_dagster.core.scale.ray_backend import RayShardMap, ray_runtime_env
from llmstack_dagster.core.scale.shard_map import LocalShardMap, ShardMap

SHARD_MAP_ENV = "LLMSTACK_SHARD_MAP"
WORKERS_ENV = "LLMSTACK_SHARD_MAP_WORKERS"
PARTITIONS_ENV = "LLMSTACK_DEDUP_SHUFFLE_PARTITIONS"


class ShardMapResource(ConfigurableResource):
    """Hands the stages a :class:`~llmstack_dagster.core.scale.shard_map.ShardMap`."""

    shuffle_partitions: int = Field(
        default=0, ge=0, description="> 0: duplicate_clusters as a shuffle with P partitions"
    )

    def get(self) -> ShardMap:
        raise NotImplementedError

    def shuffle(self) -> ShuffleConfig | None:
        """The dedup shuffle's config, or None for the in-memory runner."""
        if self.shuffle_partitions == 0:
            return None
        return ShuffleConfig(partitions=self.shuffle_partitions)


class LocalShardMapResource(ShardMapResource):
    """This machine; one worker runs inline (``make demo`` and ``make test`` as before)."""

    workers: int = Field(default=1, ge=1)

    def get(self) -> ShardMap:
        return LocalShardMap(self.workers)


class RayShardMapResource(ShardMapResource):
    """A Ray cluster reached through a ``dagster-ray`` resource (``LocalRay``, KubeRay)."""

    ray_cluster: RayResource
    workers: int | None = Field(default=None, ge=1, description="tasks in flight; None: all")
    max_retries: int = Field(default=3, ge=0)
    model_gpus: float = Field(default=0.0, ge=0, description="GPUs per model-holding actor")

    def get(self) -> ShardMap:
        return RayShardMap(
            workers=self.workers, max_retries=self.max_retries, model_gpus=self.model_gpus
        )


class ModalShardMapResource(ShardMapResource):
    """Modal containers; the storage root must be an object store (``s3://``, ``gs://``)."""

    app_name: str = "llmstack-curation"
    gpu: str = Field(default="T4", description="used by stages that ask for a GPU")
    memory_mb: int = Field(default=8192, ge=1024)
    timeout_s: int = Field(default=3600, ge=60)
    retries: int = Field(default=2, ge=0)
    modal_secrets: list[str] = Field(default_factory=list, description="modal.Secret names")

    def get(self) -> ShardMap:
        spec = ModalSpec(
            app_name=self.app_name, gpu=self.gpu, memory_mb=self.memory_mb,
            timeout_s=self.timeout_s, retries=self.retries, modal_secrets=self.modal_secrets,
        )  # fmt: skip
        return ModalShardMap(spec, secrets=self.modal_secrets)


def shard_map_resource_from_env() -> ShardMapResource:
    """``LLMSTACK_SHARD_MAP`` (local, ray, modal) and the two settings beside it."""
    backend = os.environ.get(SHARD_MAP_ENV, "local").strip().lower() or "local"
    workers = os.environ.get(WORKERS_ENV)
    partitions = int(os.environ.get(PARTITIONS_ENV, "0") or 0)
    if backend == "local":
        return LocalShardMapResource(workers=int(workers or 1), shuffle_partitions=partitions)
    if backend == "ray":
        init = {"runtime_env": ray_runtime_env(), "ignore_reinit_error": True}
        cluster = LocalRay(ray_init_options=init)
        return RayShardMapResource(
            ray_cluster=cluster,
            workers=int(workers) if workers else None,
            shuffle_partitions=partitions,
        )
    if backend == "modal":
        return ModalShardMapResource(shuffle_partitions=partitions)
    raise ValueError(f"{SHARD_MAP_ENV} must be 'local', 'ray' or 'modal', not {backend!r}")


def shard_map_from_env() -> ShardMap:
    """The engine of :func:`shard_map_resource_from_env`, for assets that take no resource
    (``raw_documents`` and ``document_fingerprints``, whose tests bind only storage and corpus)."""
    resource = shard_map_resource_from_env()
    if isinstance(resource, RayShardMapResource):  # connect as the dagster-ray resource would
        return RayShardMap(workers=resource.workers, runtime_env=ray_runtime_env())
    return resource.get()
