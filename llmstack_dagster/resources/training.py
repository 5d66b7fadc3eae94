"""Training dispatch: the interface every backend implements, and the local default.

The ``pretrained_checkpoint`` asset calls ``context.resources.training.run_training(...)``;
``definitions.py`` picks the backend from ``LLMSTACK_TRAINING_BACKEND`` (``local`` or
``modal``). Training never runs in the Dagster process.
"""

import os
from pathlib import Path

import torch
from dagster import AssetExecutionContext, ConfigurableResource, PipesSubprocessClient
from pydantic import Field

from llmstack_dagster.core.dispatch.command import launch_env, training_command
from llmstack_dagster.core.dispatch.outcome import TrainingOutcome, collect_outcome
from llmstack_dagster.core.training.config import TrainConfig

TRAINING_BACKEND_ENV = "LLMSTACK_TRAINING_BACKEND"
RUN_CONFIG = "run.json"


class TrainingResource(ConfigurableResource):
    """Runs the training entrypoint somewhere and returns the run's outcome locally."""

    def run_training(
        self, context: AssetExecutionContext, *, config: TrainConfig, data_dir: str, out_dir: str
    ) -> TrainingOutcome:
        raise NotImplementedError


def local_nproc(config: TrainConfig, requested: int | None) -> int:
    """Processes per node: all visible CUDA GPUs unless the config pins a device or CPU."""
    if config.device not in ("auto", "cuda") or not torch.cuda.is_available():
        return 1
    visible = torch.cuda.device_count()
    return max(1, min(requested or visible, visible))


class LocalTrainingResource(TrainingResource):
    """A subprocess through ``PipesSubprocessClient`` (torchrun with several CUDA GPUs)."""

    nproc_per_node: int | None = Field(
        default=None, description="GPUs to use; default all visible when the device is CUDA"
    )

    def run_training(
        self, context: AssetExecutionContext, *, config: TrainConfig, data_dir: str, out_dir: str
    ) -> TrainingOutcome:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        cfg = config.model_copy(update={"data_dir": str(data_dir), "out_dir": str(out)})
        config_file = out / RUN_CONFIG
        config_file.write_text(cfg.model_dump_json(indent=2))
        command = training_command(config_file, local_nproc(cfg, self.nproc_per_node))
        context.log.info(f"training: {' '.join(command)}")
        invocation = PipesSubprocessClient(env=launch_env()).run(
            command=command, context=context, cwd=os.getcwd()
        )
        metadata = {}
        materializations = invocation.get_results()
        if materializations:
            metadata = {k: v.value for k, v in (materializations[-1].metadata or {}).items()}
        return collect_outcome(out, metadata)


def training_resource_from_env() -> TrainingResource:
    """``LLMSTACK_TRAINING_BACKEND``: ``local`` (default) or ``modal`` (configured by env)."""
    backend = os.environ.get(TRAINING_BACKEND_ENV, "local").strip().lower() or "local"
    if backend == "local":
        return LocalTrainingResource()
    if backend == "modal":
        from llmstack_dagster.resources.modal_training import ModalTrainingResource

        return ModalTrainingResource.from_env()
    raise ValueError(f"{TRAINING_BACKEND_ENV} must be 'local' or 'modal', not {backend!r}")
