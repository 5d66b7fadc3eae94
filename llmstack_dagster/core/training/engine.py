"""The training engine: one loop for every stage, single-process or torchrun (DDP / FSDP2).

A stage supplies a task (``tasks.py``: an objective, a data source, its evaluation, samples
and export); the engine owns seeding, the optimizer and schedule, gradient accumulation,
clipping, mixed precision, ``torch.compile``, distribution, checkpoints with exact resume,
metrics (toxicity tracking included) and the HF export.

A run resumes only itself: ``out_dir`` records the run's identity (``run_identity.py``), and a
config, data or initial weights with another identity is refused there. Within its identity a
run resumes from the newest checkpoint that verifies; given the same config the loss sequence
is identical whether or not the run was interrupted (on CPU; on GPU up to kernel
non-determinism).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from llmstack_dagster.core.evaluation.toxicity_tracking import ToxicityTracker
from llmstack_dagster.core.models.config import flops_per_token, param_count
from llmstack_dagster.core.progress import format_eta
from llmstack_dagster.core.training.atomic import write_text_atomic
from llmstack_dagster.core.training.checkpoint import (
    CheckpointMeta,
    LoadedCheckpoint,
    TrainerState,
    checkpoint_dir,
    load_latest_checkpoint,
    save_checkpoint,
    set_rng_state,
    sweep_partial_checkpoints,
)
from llmstack_dagster.core.training.config import TrainConfig
from llmstack_dagster.core.training.distributed import (
    DistEnv,
    all_reduce_mean,
    barrier,
    full_state,
    grad_sync,
    init_distributed,
    load_full_state,
    load_model_state,
    shutdown_distributed,
    wrap_model,
)
from llmstack_dagster.core.training.evaluation import generations_markdown
from llmstack_dagster.core.training.init_weights import load_init_state, weights_digest
from llmstack_dagster.core.training.metrics import (
    MetricCallback,
    MetricsLogger,
    detect_peak_flops,
    mfu,
)
from llmstack_dagster.core.training.optim import build_optimizer, lr_at, set_lr
from llmstack_dagster.core.training.run_identity import (
    IDENTITY_FILE,
    RunIdentity,
    data_version,
    read_identity,
    run_identity,
)
from llmstack_dagster.core.training.tasks import build_task
from llmstack_dagster.core.training.training_task import TrainingTask

SUMMARY_FILE = "summary.json"
SAMPLES_DIR = "samples"  # answers at each evaluation, for tasks that sample there
_RUNTIME_GROUP_KEYS = ("fused", "foreach", "capturable", "differentiable")


class RunIdentityError(ValueError):
    """``out_dir`` holds another run: resuming there would mix two runs."""


@dataclass
class ResumeInfo:
    """Where this fit started and why."""

    resumed: bool
    from_step: int
    detail: str
    warnings: list[str] = field(default_factory=list)


@dataclass
class TrainResult:
    step: int
    checkpoint: Path
    hf_dir: Path | None
    metrics: dict[str, float]
    samples: list[dict[str, str]] = field(default_factory=list)
    samples_markdown: str = ""
    resume: ResumeInfo | None = None
    identity: str = ""


def code_version() -> str:
    """The git commit of the source tree, else the installed package version."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return f"git:{sha}"
    except (OSError, subprocess.SubprocessError):
        try:
            return f"llmstack=={version('llmstack')}"
        except PackageNotFoundError:
            return "unknown"


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on GPUs with native bf16, fp16 on older GPUs (T4), fp32 on CPU."""
    if name != "auto":
        return getattr(torch, name)
    if device.type != "cuda":
        return torch.float32
    bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.bfloat16 if bf16 else torch.float16


def autocast_factory(
    device: torch.device, dtype: torch.dtype
) -> Callable[[], AbstractContextManager]:
    if dtype == torch.float32:
        return nullcontext
    return partial(torch.autocast, device_type=device.type, dtype=dtype)


def identity_of(cfg: TrainConfig) -> RunIdentity:
    """The identity of the run ``cfg`` describes (reads the data index and hashes the
    initial weights, so it is cheap enough to call before dispatching)."""
    init = weights_digest(Path(cfg.init.path)) if cfg.init else None
    return run_identity(cfg, data_version(Path(cfg.data_dir)), init)


def claim_run_dir(out_dir: Path, identity: RunIdentity) -> None:
    """Record ``identity`` in ``out_dir``; refuse a folder that holds another run."""
    existing = read_identity(out_dir)
    if existing is not None and existing.id != identity.id:
        changes = "; ".join(identity.changes_from(existing)) or "settings differ"
        raise RunIdentityError(
            f"{out_dir} holds training run {existing.id}, not {identity.id} ({changes}); "
            "it resumes only itself: use a new output folder"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    if existing is None:
        write_text_atomic(out_dir / IDENTITY_FILE, identity.model_dump_json(indent=2))


def train(
    cfg: TrainConfig,
    callbacks: list[MetricCallback] | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Run (or resume) training to ``cfg.max_steps``; under torchrun every rank calls this."""
    env = init_distributed(cfg.device)
    try:
        return Engine(cfg, env, build_task(cfg, env), callbacks or [], log).fit()
    finally:
        shutdown_distributed()


class Engine:
    def __init__(
        self,
        cfg: TrainConfig,
        env: DistEnv,
        task: TrainingTask,
        callbacks: list[MetricCallback],
        log: Callable[[str], None],
    ) -> None:
        self.cfg, self.env, self.task, self.log = cfg, env, task, log
        self.out_dir = Path(cfg.out_dir)
        self.identity = identity_of(cfg)
        if env.is_main:
            claim_run_dir(self.out_dir, self.identity)
        barrier(env)
        self.model_cfg = task.model_config
        if cfg.cpu_threads:
            torch.set_num_threads(cfg.cpu_threads)
        torch.manual_seed(cfg.seed)
        self.model = task.build_model(self.model_cfg).to(env.device)
        self.dtype = resolve_dtype(cfg.dtype, env.device)
        self.autocast = autocast_factory(env.device, self.dtype)
        strategy = cfg.parallelism
        if strategy == "auto":
            big = param_count(self.model_cfg) >= cfg.fsdp_min_params
            strategy = "fsdp" if big else "ddp"
        param_dtype = self.dtype if self.dtype != torch.float32 else None
        self.wrapped = wrap_model(self.model, env, strategy, param_dtype)
        self.forward = torch.compile(self.wrapped) if cfg.compile else self.wrapped
        self.optimizer = build_optimizer(self.wrapped, cfg.optim, env.device)
        self.scaler = torch.amp.GradScaler(enabled=self.dtype == torch.float16)
        self.step = 0
        self.batches = task.data
        self.resume = self._resume()
        if task.attach is not None:
            task.attach(self.wrapped, env.device, self.autocast)
        self.logger = MetricsLogger(self.out_dir, callbacks) if env.is_main else None
        self.flops_per_token = flops_per_token(self.model_cfg, cfg.seq_len)
        self.peak = detect_peak_flops(env.device)
        self.last_metrics: dict[str, float] = {}
        self.toxicity = (
            ToxicityTracker(cfg.eval, task.prompter, cfg.seed)
            if cfg.eval.toxicity_prompts and task.prompter is not None
            else None
        )

    @property
    def tokens_per_step(self) -> int:
        """The data source's tokens per step (an online-RL source updates it per rollout)."""
        return self.batches.tokens_per_step

    def _resume(self) -> ResumeInfo:
        """Restore the newest verified checkpoint of this run, else the initial weights."""
        warnings: list[str] = []
        if self.env.is_main:
            for leftover in sweep_partial_checkpoints(self.out_dir):
                self.log(f"removed {leftover.name}, left by a run killed while checkpointing")
        barrier(self.env)
        ckpt = load_latest_checkpoint(self.out_dir, warn=warnings.append)
        for warning in warnings:
            self.log(f"warning: {warning}")
        if ckpt is not None:
            self._restore(ckpt)
            detail = f"resumed from {ckpt.path} at step {self.step} (run {self.identity.id})"
            self.log(detail)
            return ResumeInfo(True, self.step, detail, warnings)
        if self.cfg.init is not None:
            model_state, optim_state = load_init_state(
                Path(self.cfg.init.path), self.cfg.init.load_optimizer
            )
            self._load_state(self._with_fresh_parameters(model_state), optim_state)
            kept = "with its optimizer state" if optim_state else "with a fresh optimizer"
            detail = f"started at step 0 from the weights in {self.cfg.init.path}, {kept}"
        else:
            detail = "started at step 0 from a random initialization"
        self.log(f"{detail} (run {self.identity.id})")
        return ResumeInfo(False, 0, detail, warnings)

    def _with_fresh_parameters(self, model_state: dict) -> dict:
        """The initial weights plus the task's new parameters (a reward head) as initialized
        here; any other parameter the weights lack is an error."""
        own = self.model.state_dict()
        missing = [k for k in own if k not in model_state]
        new = self.task.fresh_parameters
        unknown = [k for k in missing if not any(k.startswith(prefix) for prefix in new)]
        if unknown:
            raise ValueError(f"initial weights {self.cfg.init.path} lack {unknown[:5]}")
        fresh = {k: own[k].full_tensor() if hasattr(own[k], "full_tensor") else own[k]
                 for k in missing}  # fmt: skip
        return {**model_state, **fresh}

    def _load_state(self, model_state: dict, optim_state: dict | None) -> None:
        if optim_state is None:
            load_model_state(self.wrapped, model_state)
            return
        for saved, current in zip(
            optim_state["param_groups"], self.optimizer.param_groups, strict=True
        ):
            saved.update({k: current[k] for k in _RUNTIME_GROUP_KEYS if k in current})
        load_full_state(self.wrapped, self.optimizer, model_state, optim_state)

    def _restore(self, ckpt: LoadedCheckpoint) -> None:
        self._load_state(ckpt.model_state, ckpt.optim_state)
        if ckpt.trainer_state.grad_scaler:
            self.scaler.load_state_dict(ckpt.trainer_state.grad_scaler)
        set_rng_state(ckpt.rng)
        self.step = ckpt.trainer_state.step
        self.batches.position = ckpt.trainer_state.loader

    def fit(self) -> TrainResult:
        cfg = self.cfg
        self.log(
            f"training {param_count(self.model_cfg):,} params on {self.env.device} "
            f"x{self.env.world_size} ({self.dtype}), objective {self.task.objective.name}, "
            f"steps {self.step}->{cfg.max_steps}"
        )
        if (cfg.eval.every or cfg.init) and self.step == 0:  # a run from weights: its start
            self._emit(self._evaluate(), "eval")
        self._fit_start = (time.perf_counter(), self.step)
        window_start, window_steps = time.perf_counter(), 0
        while self.step < cfg.max_steps:
            metrics, grad_norm, lr = self._train_step()
            window_steps += 1
            if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                values = self._step_metrics(metrics, grad_norm, lr, window_start, window_steps)
                window_start, window_steps = time.perf_counter(), 0
                self._emit(values, "train")
            if cfg.eval.every and self.step % cfg.eval.every == 0 and self.step < cfg.max_steps:
                self._emit(self._evaluate(), "eval")
            if self.step % cfg.checkpoint_every == 0 and self.step < cfg.max_steps:
                self._checkpoint()
        self._emit(self._evaluate(), "eval")
        final = self._checkpoint()
        return self._finish(final)

    def _train_step(self) -> tuple[dict[str, torch.Tensor], torch.Tensor, float]:
        lr = lr_at(self.step, self.cfg.max_steps, self.cfg.optim)
        set_lr(self.optimizer, lr)
        micro = self.batches.next_step()
        objective = self.task.objective
        denominator = objective.step_denominator(micro)
        sums: dict[str, torch.Tensor] = {}
        for i, batch in enumerate(micro):
            batch = {k: v.to(self.env.device, non_blocking=True) for k, v in batch.items()}
            with grad_sync(self.wrapped, i == len(micro) - 1), self.autocast():
                loss, metrics = objective.loss(self.forward, batch, denominator)
            self.scaler.scale(loss).backward()
            for name, value in metrics.items():
                sums[name] = sums[name] + value if name in sums else value
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.wrapped.parameters(), self.cfg.optim.grad_clip
        )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return sums, grad_norm, lr

    def _step_metrics(
        self,
        metrics: dict[str, torch.Tensor],
        grad_norm: torch.Tensor,
        lr: float,
        since: float,
        steps: int,
    ) -> dict[str, float]:
        values = {f"train/{k}": float(all_reduce_mean(v, self.env)) for k, v in metrics.items()}
        norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
        elapsed = max(time.perf_counter() - since, 1e-9)
        tokens_per_s = self.tokens_per_step * steps / elapsed
        values |= {
            "train/lr": lr,
            "train/grad_norm": float(norm),
            "train/tokens_per_s": tokens_per_s,
            "train/tokens": float(self.step * self.tokens_per_step),
        }
        if self.peak:
            values["train/mfu"] = mfu(
                tokens_per_s, self.flops_per_token, self.peak, self.env.world_size
            )
        return values

    def _eta(self) -> str:
        """`` (ETA 3 min 05 s)`` from the steps done in this fit so far, or ``""``."""
        started, first_step = getattr(self, "_fit_start", (0.0, self.step))
        if self.step <= first_step:
            return ""
        per_step = (time.perf_counter() - started) / (self.step - first_step)
        return f" (ETA {format_eta(per_step * (self.cfg.max_steps - self.step))})"

    def _emit(self, values: dict[str, float], kind: str) -> None:
        self.last_metrics.update(values)
        if self.logger is not None:
            self.logger.log(self.step, values, kind=kind)
            shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
            self.log(f"step {self.step}/{self.cfg.max_steps}{self._eta()}: {shown}")

    def _evaluate(self) -> dict[str, float]:
        values = self.task.evaluate(self.wrapped, self.env.device, self.autocast)
        if self.toxicity is not None:
            values |= self.toxicity.measure(self.wrapped, self.autocast)
        if self.task.sample_at_eval:
            samples = self.task.sample(self.wrapped, self.env.device)
            if self.env.is_main:
                (self.out_dir / SAMPLES_DIR).mkdir(exist_ok=True)
                markdown = generations_markdown(samples, self.cfg.eval.top_p)
                path = self.out_dir / SAMPLES_DIR / f"step_{self.step:08d}.md"
                write_text_atomic(path, markdown)
        return values

    def _checkpoint(self) -> Path:
        model_state, optim_state = full_state(self.wrapped, self.optimizer)
        path = checkpoint_dir(self.out_dir, self.step)
        if self.env.is_main:
            state = TrainerState(
                step=self.step,
                loader=self.batches.position,
                param_groups=[],
                grad_scaler=self.scaler.state_dict() if self.scaler.is_enabled() else None,
            )
            meta = CheckpointMeta(
                step=self.step,
                tokens_seen=self.step * self.tokens_per_step,
                model=self.model_cfg.model_dump(),
                train_config=self.cfg.model_dump(),
                run_id=self.identity.id,
                init_weights=self.identity.init_weights,
                code_version=code_version(),
                metrics={
                    k: v
                    for k, v in self.last_metrics.items()
                    if k.startswith(("val/", "train/loss"))
                },
                **self.task.provenance,
            )
            save_checkpoint(
                self.out_dir, model_state, optim_state, state, meta, keep=self.cfg.keep_checkpoints
            )
        barrier(self.env)
        return path

    def _finish(self, final: Path) -> TrainResult:
        samples = self.task.sample(self.wrapped, self.env.device)
        markdown = generations_markdown(samples, self.cfg.eval.top_p)
        hf_dir = None
        if self.env.is_main and self.cfg.export_hf:
            hf_dir = self.task.export(final, self.out_dir / "hf")
        result = TrainResult(
            self.step,
            final,
            hf_dir,
            dict(self.last_metrics),
            samples,
            markdown,
            self.resume,
            self.identity.id,
        )
        if self.logger is not None:
            summary: dict[str, Any] = {
                "step": self.step,
                "checkpoint": str(final),
                "hf_dir": str(hf_dir) if hf_dir else None,
                "metrics": result.metrics,
                "samples": samples,
                "params": param_count(self.model_cfg),
                "run_id": self.identity.id,
                "resume": vars(self.resume),
            }
            write_text_atomic(self.out_dir / SUMMARY_FILE, json.dumps(summary, indent=2))
            self.logger.close()
        barrier(self.env)
        return result
