"""The reward model: the decoder with a scalar head on the final token of a sequence.

It keeps every parameter of :class:`LlamaLM` (so it starts from an SFT checkpoint as it is;
a tied LM head costs nothing) and adds ``score``, a bias-free ``d_model -> 1`` projection of
the final normed hidden state, as Hugging Face's ``LlamaForSequenceClassification`` with one
label reads the last non-padding token.
"""

from __future__ import annotations

import torch
from torch import nn

from llmstack_dagster.core.models.config import ModelConfig
from llmstack_dagster.core.models.llama import LlamaLM

NEW_PARAMETERS = ("score.",)  # not in an LM checkpoint: they start from their initialization


class RewardModel(LlamaLM):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.score = nn.Linear(cfg.d_model, 1, bias=False)
        nn.init.normal_(self.score.weight, std=cfg.init_std)

    def forward(self, idx: torch.Tensor, last_index: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """One reward per row: the score of the hidden state at ``last_index``."""
        hidden = self.hidden(idx)
        rows = torch.arange(idx.shape[0], device=idx.device)
        return self.score(hidden[rows, last_index]).squeeze(-1).float()
