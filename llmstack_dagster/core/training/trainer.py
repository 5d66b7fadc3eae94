"""The pretraining loop: seeded, resumable, single-process or torchrun (DDP / FSDP2).

Resumes from the latest complete checkpoint in ``out_dir``. Given the same config the loss
sequence is identical whether or not the run was interrupted (on CPU; on GPU up to kernel
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

from llmstack_dagster.core.models.config import flops_per_token, param_count
from llmstack_dagster.core.models.llama import LlamaLM
from llmstack_dagster.core.progress import format_eta
from llmstack_dagster.core.training.atomic import write_text_atomic
from llmstack_dagster.core.training.checkpoint import (
    CheckpointMeta,
    TrainerState,
    checkpoint_dir,
    latest_complete_checkpoint,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from llmstack_dagster.core.training.config import TrainConfig
from llmstack_dagster.core.training.data_loader import TokenWindows, TrainBatches
from llmstack_dagster.core.training.distributed import (
    DistEnv,
    all_reduce_mean,
    barrier,
    full_state,
    grad_sync,
    init_distributed,
    load_full_state,
    shutdown_distributed,
    wrap_model,
)
from llmstack_dagster.core.training.evaluation import (
    evaluate_domains,
    generations_markdown,
    sample_generations,
)
from llmstack_dagster.core.training.hf_export import export_hf
from llmstack_dagster.core.training.metrics import (
    MetricCallback,
    MetricsLogger,
    detect_peak_flops,
    mfu,
)
from llmstack_dagster.core.training.optim import build_optimizer, lr_at, set_lr
from llmstack_dagster.core.training.token_shards import load_token_index
from llmstack_dagster.core.training.tokenizer import load_tokenizer

SUMMARY_FILE = "summary.json"
_RUNTIME_GROUP_KEYS = ("fused", "foreach", "capturable", "differentiable")


@dataclass
class TrainResult:
    step: int
    checkpoint: Path
    hf_dir: Path | None
    metrics: dict[str, float]
    samples: list[dict[str, str]] = field(default_factory=list)
    samples_markdown: str = ""


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


def train(
    cfg: TrainConfig,
    callbacks: list[MetricCallback] | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Run (or resume) training to ``cfg.max_steps``; under torchrun every rank calls this."""
    env = init_distributed(cfg.device)
    try:
        return _Run(cfg, env, callbacks or [], log).fit()
    finally:
        shutdown_distributed()


class _Run:
    def __init__(
        self,
        cfg: TrainConfig,
        env: DistEnv,
        callbacks: list[MetricCallback],
        log: Callable[[str], None],
    ) -> None:
        self.cfg, self.env, self.log = cfg, env, log
        self.data_dir, self.out_dir = Path(cfg.data_dir), Path(cfg.out_dir)
        self.index = load_token_index(self.data_dir)
        self.model_cfg = cfg.resolve_model(self.index.vocab_size)
        if cfg.cpu_threads:
            torch.set_num_threads(cfg.cpu_threads)
        torch.manual_seed(cfg.seed)
        self.model = LlamaLM(self.model_cfg).to(env.device)
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
        windows = TokenWindows(
            self.data_dir, self.index, self.index.split_shards("train"), cfg.seq_len
        )
        self.batches = TrainBatches(
            windows, cfg.micro_batch_size, cfg.grad_accum_steps, cfg.seed, env.rank, env.world_size
        )
        self._resume()
        self.logger = MetricsLogger(self.out_dir, callbacks) if env.is_main else None
        self.flops_per_token = flops_per_token(self.model_cfg, cfg.seq_len)
        self.peak = detect_peak_flops(env.device)
        self.tokens_per_step = self.batches.global_batch * cfg.seq_len
        self.last_metrics: dict[str, float] = {}

    def _resume(self) -> None:
        path = latest_complete_checkpoint(self.out_dir)
        if path is None:
            return
        ckpt = load_checkpoint(path)
        for saved, current in zip(
            ckpt.optim_state["param_groups"], self.optimizer.param_groups, strict=True
        ):
            saved.update({k: current[k] for k in _RUNTIME_GROUP_KEYS if k in current})
        load_full_state(self.wrapped, self.optimizer, ckpt.model_state, ckpt.optim_state)
        if ckpt.trainer_state.grad_scaler:
            self.scaler.load_state_dict(ckpt.trainer_state.grad_scaler)
        set_rng_state(ckpt.rng)
        self.step = ckpt.trainer_state.step
        self.batches.position = ckpt.trainer_state.loader
        self.log(f"resumed from {path} at step {self.step}")

    def fit(self) -> TrainResult:
        cfg = self.cfg
        self.log(
            f"training {param_count(self.model_cfg):,} params on {self.env.device} "
            f"x{self.env.world_size} ({self.dtype}), steps {self.step}->{cfg.max_steps}"
        )
        if cfg.eval.every and self.step == 0:
            self._emit(self._evaluate(), "eval")
        self._fit_start = (time.perf_counter(), self.step)
        window_start, window_steps = time.perf_counter(), 0
        while self.step < cfg.max_steps:
            loss, grad_norm, lr = self._train_step()
            window_steps += 1
            if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                values = self._step_metrics(loss, grad_norm, lr, window_start, window_steps)
                window_start, window_steps = time.perf_counter(), 0
                self._emit(values, "train")
            if cfg.eval.every and self.step % cfg.eval.every == 0 and self.step < cfg.max_steps:
                self._emit(self._evaluate(), "eval")
            if self.step % cfg.checkpoint_every == 0 and self.step < cfg.max_steps:
                self._checkpoint()
        self._emit(self._evaluate(), "eval")
        final = self._checkpoint()
        return self._finish(final)

    def _train_step(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        lr = lr_at(self.step, self.cfg.max_steps, self.cfg.optim)
        set_lr(self.optimizer, lr)
        micro = self.batches.next_step()
        loss_sum = torch.zeros((), device=self.env.device)
        for i, (x, y) in enumerate(micro):
            x = x.to(self.env.device, non_blocking=True)
            y = y.to(self.env.device, non_blocking=True)
            with grad_sync(self.wrapped, i == len(micro) - 1), self.autocast():
                loss = self.forward(x, y) / len(micro)
            self.scaler.scale(loss).backward()
            loss_sum += loss.detach()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.wrapped.parameters(), self.cfg.optim.grad_clip
        )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return loss_sum, grad_norm, lr

    def _step_metrics(
        self, loss: torch.Tensor, grad_norm: torch.Tensor, lr: float, since: float, steps: int
    ) -> dict[str, float]:
        loss_value = float(all_reduce_mean(loss, self.env))
        norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
        elapsed = max(time.perf_counter() - since, 1e-9)
        tokens_per_s = self.tokens_per_step * steps / elapsed
        values = {
            "train/loss": loss_value,
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
        cfg = self.cfg
        return evaluate_domains(
            self.wrapped,
            self.data_dir,
            self.index,
            cfg.seq_len,
            cfg.micro_batch_size,
            cfg.eval.batches,
            self.env.device,
            self.autocast,
        )

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
                date_min=self.index.date_min,
                date_max=self.index.date_max,
                mixture_hash=self.index.mixture_hash,
                tokenizer_hash=self.index.tokenizer_hash,
                data_version=self.index.data_version,
                code_version=code_version(),
                metrics={
                    k: v
                    for k, v in self.last_metrics.items()
                    if k.startswith(("val/", "train/loss"))
                },
            )
            save_checkpoint(
                self.out_dir, model_state, optim_state, state, meta, keep=self.cfg.keep_checkpoints
            )
        barrier(self.env)
        return path

    def _finish(self, final: Path) -> TrainResult:
        tokenizer_file = self.data_dir / self.index.tokenizer_file
        samples = sample_generations(
            self.wrapped,
            load_tokenizer(tokenizer_file),
            self.cfg.eval,
            self.model_cfg.max_seq_len,
            self.env.device,
            self.index.eos_id,
            self.cfg.seed,
        )
        markdown = generations_markdown(samples, self.cfg.eval.top_p)
        hf_dir = None
        if self.env.is_main and self.cfg.export_hf:
            hf_dir = export_hf(final, self.out_dir / "hf", tokenizer_file, self.index)
        result = TrainResult(self.step, final, hf_dir, dict(self.last_metrics), samples, markdown)
        if self.logger is not None:
            summary: dict[str, Any] = {
                "step": self.step,
                "checkpoint": str(final),
                "hf_dir": str(hf_dir) if hf_dir else None,
                "metrics": result.metrics,
                "samples": samples,
                "params": param_count(self.model_cfg),
            }
            write_text_atomic(self.out_dir / SUMMARY_FILE, json.dumps(summary, indent=2))
            self.logger.close()
        barrier(self.env)
        return result
