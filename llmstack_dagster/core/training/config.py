"""The training run's configuration: one JSON file read by the entrypoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from llmstack_dagster.core.models.config import ModelConfig, model_config
from llmstack_dagster.core.posttraining.grpo_config import GRPOConfig
from llmstack_dagster.core.posttraining.preference_losses import PreferenceLossConfig

DEFAULT_PROMPTS = ["The meaning of", "def main():", "In the year", "Once upon a time"]


class OptimConfig(BaseModel):
    """AdamW with linear warmup then a decay to ``min_lr_ratio * lr``.

    Defaults follow GPT-3 / Llama practice: betas (0.9, 0.95), weight decay 0.1 on matrices
    only, gradient clipping at 1.0. ``schedule``: ``cosine`` decays over every step after the
    warmup (for continued pretraining this is re-warm then re-decay, Ibrahim et al. 2024);
    ``wsd`` (warmup-stable-decay, Hu et al. 2024; Hägele et al. 2024) holds ``lr`` and decays
    linearly over the last ``cooldown_fraction`` of the steps; ``linear`` decays linearly over
    every step after the warmup (Tulu 3's SFT schedule).
    """

    lr: float = 6e-4
    min_lr_ratio: float = Field(default=0.1, ge=0.0, le=1.0)
    warmup_steps: int = Field(default=100, ge=0)
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = Field(default=1.0, gt=0.0)
    schedule: Literal["cosine", "wsd", "linear"] = "cosine"
    cooldown_fraction: float = Field(default=0.2, gt=0.0, le=1.0)


class InitConfig(BaseModel):
    """Initial weights: a complete checkpoint folder of this stack, or a weights folder made
    by the Hugging Face import. ``load_optimizer`` also restores the AdamW moments of a
    checkpoint (continued pretraining may keep or reset them)."""

    path: str
    load_optimizer: bool = False


class EvalConfig(BaseModel):
    """Validation, samples, and toxicity tracking: at each evaluation the engine continues
    ``toxicity_prompts`` (a fixed, seeded set of RealToxicityPrompts prompts that the asset
    fills in; none: no tracking) and logs ``eval/toxicity_rate`` and ``eval/toxicity_mean``
    (``core/evaluation/toxicity_tracking.py``; Gehman et al. 2020's nucleus p = 0.9, 20
    tokens, toxic at 0.5)."""

    every: int = Field(default=100, ge=0)
    batches: int = Field(default=8, ge=1)
    prompts: list[str] = Field(default_factory=lambda: list(DEFAULT_PROMPTS))
    max_new_tokens: int = 48
    temperature: float = 0.8
    top_p: float = 0.9
    toxicity_prompts: list[str] = Field(default_factory=list)
    toxicity_max_new_tokens: int = Field(default=20, ge=1)
    toxicity_top_p: float = Field(default=0.9, gt=0.0, le=1.0)
    toxicity_threshold: float = Field(default=0.5, ge=0.0, le=1.0)


class PreferenceConfig(BaseModel):
    """The reward-model and DPO tasks (``core/posttraining``). ``dpo``: the loss and its β;
    the reward model's Bradley–Terry loss takes an optional constant ``reward_margin`` and
    TRL's centering term ``center_rewards`` · (r_chosen + r_rejected)². The DPO reference is
    the initial weights unless ``reference_sha256`` names another model's weights; its cached
    log-probabilities must carry that digest (never a fallback to the policy)."""

    dpo: PreferenceLossConfig = Field(default_factory=PreferenceLossConfig)
    reward_margin: float = 0.0
    center_rewards: float = Field(default=0.0, ge=0.0)
    reference_sha256: str | None = None


class TrainConfig(BaseModel):
    """Everything a run needs; paths are local (a Modal volume mount is local too)."""

    data_dir: str
    out_dir: str
    preset: str = "tiny"
    model_overrides: dict[str, Any] = Field(default_factory=dict)
    seq_len: int = Field(default=128, ge=8)
    micro_batch_size: int = Field(default=8, ge=1)
    grad_accum_steps: int = Field(default=1, ge=1)
    max_steps: int = Field(default=300, ge=1)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    seed: int = 1337
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    compile: bool = False
    cpu_threads: int | None = Field(
        default=None, ge=1, description="torch intra-op threads; 1 avoids spin-wait on busy CPUs"
    )
    parallelism: Literal["auto", "ddp", "fsdp"] = "auto"
    fsdp_min_params: int = 500_000_000
    checkpoint_every: int = Field(default=100, ge=1)
    keep_checkpoints: int = Field(default=2, ge=1)
    log_every: int = Field(default=10, ge=1)
    export_hf: bool = True
    objective: str = Field(
        default="next_token", description="the training task (see core/training/tasks.py)"
    )
    init: InitConfig | None = None
    packing: bool = Field(
        default=True, description="SFT: pack conversations per row (False: one, padded)"
    )
    preference: PreferenceConfig = Field(default_factory=PreferenceConfig)
    reference_logprobs: str | None = Field(
        default=None, description="DPO: the folder of the cached reference log-probabilities"
    )
    rl: GRPOConfig = Field(default_factory=GRPOConfig)

    def resolve_model(self, vocab_size: int) -> ModelConfig:
        """The preset with the tokenizer's vocabulary and ``model_overrides`` applied (a run
        with ``init`` takes its shape from the initial weights instead)."""
        overrides = {"vocab_size": vocab_size, **self.model_overrides}
        overrides.setdefault("max_seq_len", max(self.seq_len, 256))
        return model_config(self.preset, **overrides)

    @classmethod
    def from_file(cls, path: Path) -> TrainConfig:
        return cls.model_validate_json(Path(path).read_text())
