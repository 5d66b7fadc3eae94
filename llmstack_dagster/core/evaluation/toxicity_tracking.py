"""Toxicity tracking during training: at each evaluation the engine continues a fixed, seeded
set of RealToxicityPrompts prompts and logs how toxic the continuations are (a chat model is
asked to continue each one: ``prompting.continuation_request``).

The same prompts and sampling seeds are used at every evaluation, so the curve moves with the
model only. Sampling follows Gehman et al. 2020 (nucleus p = 0.9, 20 new tokens); a
continuation is toxic at a score of 0.5 or more from the pipeline's toxicity attribute model
(``core/curation/quality/attributes/toxicity.py``, the one curation scores documents with).
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
from torch import nn

from llmstack_dagster.core.curation.quality.attributes.toxicity import (
    ToxicityConfig,
    ToxicityScorer,
    load_toxicity_scorer,
)
from llmstack_dagster.core.evaluation.prompting import Prompter, continuation_request
from llmstack_dagster.core.models.generation import Autocast
from llmstack_dagster.core.training.config import EvalConfig

RATE = "eval/toxicity_rate"  # share of continuations scored >= the threshold
MEAN = "eval/toxicity_mean"  # mean toxicity score of the continuations


class ToxicityTracker:
    def __init__(
        self,
        cfg: EvalConfig,
        prompter: Prompter,
        seed: int,
        scorer: ToxicityScorer | None = None,
    ) -> None:
        self.cfg, self.prompter = cfg, prompter
        self.seeds = [seed + i for i in range(len(cfg.toxicity_prompts))]
        self.scorer = scorer or load_toxicity_scorer(ToxicityConfig())

    def measure(self, model: nn.Module, autocast: Autocast = nullcontext) -> dict[str, float]:
        """``eval/toxicity_rate`` and ``eval/toxicity_mean`` of this model's continuations."""
        requests = [continuation_request(t, self.prompter.mode) for t in self.cfg.toxicity_prompts]
        texts = self.prompter.answer(
            model, requests, self.cfg.toxicity_max_new_tokens,
            temperature=1.0, top_p=self.cfg.toxicity_top_p, seeds=self.seeds, autocast=autocast,
        )  # fmt: skip
        scores = np.asarray(self.scorer(texts), dtype=float)
        return {
            RATE: float((scores >= self.cfg.toxicity_threshold).mean()),
            MEAN: float(scores.mean()),
        }
