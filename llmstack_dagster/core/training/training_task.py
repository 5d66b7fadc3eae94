"""What a stage plugs into the engine: a data source and a task (objective, data, evaluation,
samples, export). The tasks themselves are registered in ``tasks.py``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from llmstack_dagster.core.evaluation.prompting import Prompter
from llmstack_dagster.core.models.config import ModelConfig
from llmstack_dagster.core.models.llama import LlamaLM
from llmstack_dagster.core.training.data_loader import Batch, LoaderPosition
from llmstack_dagster.core.training.evaluation import Autocast
from llmstack_dagster.core.training.objectives import Objective


class DataSource(Protocol):
    """This rank's micro-batches, one optimizer step at a time, from a resumable position."""

    global_batch: int
    tokens_per_step: int
    position: LoaderPosition

    def next_step(self) -> list[Batch]: ...


@dataclass
class TrainingTask:
    objective: Objective
    data: DataSource
    model_config: ModelConfig
    evaluate: Callable[[nn.Module, torch.device, Autocast], dict[str, float]]
    sample: Callable[[nn.Module, torch.device], list[dict[str, str]]]
    export: Callable[[Path, Path], Path]
    # how the model is asked (toxicity tracking continues prompts with it); None: no text out
    prompter: Prompter | None = None
    provenance: dict[str, Any] = field(default_factory=dict)  # recorded in checkpoint meta
    sample_at_eval: bool = False  # also sample at every evaluation (samples/step_*.md)
    build_model: Callable[[ModelConfig], nn.Module] = LlamaLM
    # parameter-name prefixes the initial weights lack (a new head): they keep their init
    fresh_parameters: tuple[str, ...] = ()
    # called once the engine's model is built and restored (online RL samples from it)
    attach: Callable[[nn.Module, torch.device, Autocast], None] | None = None
