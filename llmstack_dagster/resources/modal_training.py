"""Training on Modal GPUs: upload the shards, spawn the remote run, stream its events back.

Flow: build the app spec (preset + overrides) -> sync the token-shard folder (with its
tokenizer) to the volume, skipping files with the same SHA-256 -> spawn ``train`` inside an
ephemeral ``app.run()`` -> poll the ``modal.Queue`` partition of this run, logging every line
and metric record to Dagster live -> download the final checkpoint, HF export and metrics into
``out_dir``. A Dagster cancellation cancels the ``FunctionCall``. A call that hits Modal's
timeout is spawned again (up to ``resubmit_on_timeout`` times); like Modal's own retries it
resumes from the latest complete checkpoint committed to the volume.
"""

import hashlib
import os
import time
import uuid
from pathlib import Path
from typing import Any

import modal
from dagster import AssetExecutionContext, DagsterExecutionInterruptedError
from modal.exception import FunctionTimeoutError
from pydantic import Field

from llmstack_dagster.core.dispatch.download import download_run
from llmstack_dagster.core.dispatch.modal_app import (
    ModalApp,
    ModalSpec,
    Preset,
    build_app,
    gpu_count,
    resolve_spec,
)
from llmstack_dagster.core.dispatch.outcome import (
    TrainingOutcome,
    collect_outcome,
    summary_metadata,
)
from llmstack_dagster.core.dispatch.remote import RemoteRequest
from llmstack_dagster.core.dispatch.upload_plan import sync_folder
from llmstack_dagster.core.training.config import TrainConfig
from llmstack_dagster.core.training.init_weights import weights_digest
from llmstack_dagster.core.training.token_shards import INDEX_FILE
from llmstack_dagster.resources.training import TrainingResource

EVENT_BATCH = 256
ENV_FIELDS = {
    "preset": "preset",
    "gpu": "gpu",
    "app": "app_name",
    "volume": "volume_name",
    "secrets": "modal_secrets",
}


def data_key(data_dir: Path) -> str:
    """Volume folder of a token-shard dataset: named by its index's digest."""
    return "data/" + hashlib.sha256((data_dir / INDEX_FILE).read_bytes()).hexdigest()[:16]


def run_key(out_dir: Path) -> str:
    """Volume folder of a run: stable for one ``out_dir`` (one run identity), so re-runs of
    the same run resume there."""
    digest = hashlib.sha256(str(out_dir.resolve()).encode()).hexdigest()[:10]
    return f"runs/{out_dir.name}-{digest}"


class ModalTrainingResource(TrainingResource):
    """Config of the Modal backend; unset fields come from ``preset``.

    ``modal_secrets`` names ``modal.Secret`` objects; ``env_secrets`` maps environment
    variable names to values (use ``dagster.EnvVar``). Both reach only the container's
    environment, never logs or metadata.
    """

    preset: Preset = "testing"
    app_name: str = "llmstack-train"
    volume_name: str = "llmstack-train"
    gpu: str | None = Field(default=None, description='e.g. "T4", "A100-80GB", "H100:8"')
    memory_mb: int | None = None
    timeout_s: int | None = None
    retries: int | None = None
    max_steps: int | None = Field(default=None, description="cap on the run's max_steps")
    modal_secrets: list[str] = Field(default_factory=list)
    env_secrets: dict[str, str] = Field(default_factory=dict)
    commit_every_s: float = 300.0
    poll_s: float = 2.0
    resubmit_on_timeout: int = 3

    @classmethod
    def from_env(cls) -> "ModalTrainingResource":
        """``LLMSTACK_MODAL_{PRESET,GPU,APP,VOLUME,SECRETS}`` (secrets: comma-separated names)."""
        env = {k: os.environ.get(f"LLMSTACK_MODAL_{k.upper()}", "") for k in ENV_FIELDS}
        values: dict[str, Any] = {ENV_FIELDS[k]: v for k, v in env.items() if v and k != "secrets"}
        if env["secrets"]:
            values["modal_secrets"] = [s.strip() for s in env["secrets"].split(",") if s.strip()]
        return cls(**values)

    def spec(self) -> ModalSpec:
        return resolve_spec(
            self.preset,
            app_name=self.app_name,
            volume_name=self.volume_name,
            gpu=self.gpu,
            memory_mb=self.memory_mb,
            timeout_s=self.timeout_s,
            retries=self.retries,
            max_steps=self.max_steps,
            modal_secrets=self.modal_secrets,
        )

    def run_training(
        self, context: AssetExecutionContext, *, config: TrainConfig, data_dir: str, out_dir: str
    ) -> TrainingOutcome:
        spec = self.spec()
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        steps = min(config.max_steps, spec.max_steps or config.max_steps)
        cfg = config.model_copy(update={"max_steps": steps, "out_dir": str(out)})
        modal_app = build_app(spec, self.env_secrets)
        context.log.info(
            f"modal: app {spec.app_name}, volume {spec.volume_name}, gpu {spec.gpu}, "
            f"{spec.memory_mb} MiB, timeout {spec.timeout_s} s, retries {spec.retries}, "
            f"{steps} steps"
        )
        data_rel = data_key(Path(data_dir))
        plan = sync_folder(modal_app.volume, Path(data_dir), data_rel)
        context.log.info(
            f"modal: uploaded {len(plan.upload)} files ({plan.upload_bytes:,} bytes), "
            f"skipped {len(plan.skip)} unchanged, to {spec.volume_name}:/{data_rel}"
        )
        init_rel = None
        if cfg.init is not None:  # the weights travel like the data: by digest, once
            init_dir = Path(cfg.init.path)
            init_rel = "init/" + weights_digest(init_dir)[:16]
            sync_folder(modal_app.volume, init_dir, init_rel)
        request = RemoteRequest(
            config=cfg.model_dump(),
            data_rel=data_rel,
            init_rel=init_rel,
            run_rel=run_key(out),
            volume_name=spec.volume_name,
            queue_name=f"{spec.app_name}-events",
            partition=uuid.uuid4().hex,
            nproc=gpu_count(spec.gpu),
            commit_every_s=self.commit_every_s,
        )
        with modal_app.app.run():
            result = self._run_until_done(context, modal_app, request)
        checkpoint = Path(result["checkpoint"]).name if result.get("checkpoint") else None
        files = download_run(modal_app.volume, request.run_rel, out, checkpoint)
        context.log.info(f"modal: downloaded {len(files)} files into {out}")
        return collect_outcome(out, summary_metadata(cfg, out))

    def _run_until_done(
        self, context: AssetExecutionContext, modal_app: ModalApp, request: RemoteRequest
    ) -> dict[str, Any]:
        events = modal.Queue.from_name(request.queue_name, create_if_missing=True)
        for attempt in range(self.resubmit_on_timeout + 1):
            call = modal_app.function.spawn(request.model_dump())
            context.log.info(f"modal: spawned call {call.object_id} (attempt {attempt + 1})")
            try:
                return self._poll(context, call, events, request.partition)
            except FunctionTimeoutError:
                context.log.warning(
                    "modal: call timed out; resubmitting, it resumes from the "
                    "latest complete checkpoint in the volume"
                )
            except (KeyboardInterrupt, DagsterExecutionInterruptedError):
                context.log.warning(f"modal: run interrupted, cancelling call {call.object_id}")
                call.cancel()
                raise
        raise RuntimeError(f"modal: still unfinished after {self.resubmit_on_timeout} resubmits")

    def _poll(
        self, context: AssetExecutionContext, call: Any, events: modal.Queue, partition: str
    ) -> dict[str, Any]:
        """Forward queued events until the call returns (its errors propagate)."""
        while True:
            self._forward(context, events.get_many(EVENT_BATCH, block=False, partition=partition))
            try:
                result = call.get(timeout=0)
            except TimeoutError:
                time.sleep(self.poll_s)
                continue
            self._forward(context, events.get_many(EVENT_BATCH, block=False, partition=partition))
            return result

    @staticmethod
    def _forward(context: AssetExecutionContext, batch: list[dict[str, Any]]) -> None:
        for event in batch:
            if event.get("kind") == "metric":
                record = event["record"]
                values = {k: v for k, v in record.items() if k != "time" and isinstance(v, float)}
                shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
                context.log.info(f"modal metric step {record.get('step')}: {shown}")
            else:
                context.log.info(f"modal: {event.get('message', '')}")
