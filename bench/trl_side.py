"""What the TRL side of ``bench/sft.py`` and ``bench/dpo.py`` shares: training arguments that
match our loop, the bench tokenizer as a transformers tokenizer, step timing, and peak RSS."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def matched_trl_args(output_dir: Path, steps: int, batch: int, lr: float, seed: int) -> dict:
    """TRL ``TrainingArguments`` fields that match our loop: a constant learning rate, AdamW
    (0.9, 0.95, 1e-8) without weight decay, clipping at 1.0, fp32 on the CPU, one process, no
    logging or saving."""
    return {
        "output_dir": str(output_dir),
        "max_steps": steps,
        "per_device_train_batch_size": batch,
        "gradient_accumulation_steps": 1,
        "learning_rate": lr,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "adam_beta1": 0.9,
        "adam_beta2": 0.95,
        "adam_epsilon": 1e-8,
        "max_grad_norm": 1.0,
        "optim": "adamw_torch_fused",
        "use_cpu": True,
        "bf16": False,
        "fp16": False,
        "logging_steps": 1000,
        "save_strategy": "no",
        "report_to": [],
        "seed": seed,
        "dataloader_num_workers": 0,
    }


def bench_tokenizer(tokenizer_file: Path) -> Any:
    """Our bench tokenizer as a ``PreTrainedTokenizerFast`` with its special tokens."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_file),
        pad_token="<|pad|>",
        eos_token="<|eos|>",
        bos_token="<|bos|>",
    )


def step_timer(times: list[float]) -> Any:
    """A ``TrainerCallback`` that appends each optimizer step's duration to ``times``."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *_args: Any, **_kwargs: Any) -> None:
            self.start = time.perf_counter()

        def on_step_end(self, *_args: Any, **_kwargs: Any) -> None:
            times.append(time.perf_counter() - self.start)

    return StepTimer()


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM on Linux, else ``ru_maxrss``)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
