"""Config profiles: the same assets, sized for a run. The demo is the real pipeline under a
small profile (a few hundred thousand tokens, a 4k vocabulary, a 1.3M-parameter model).

One profile is active per process: ``$LLMSTACK_PROFILE``, ``demo`` when unset (a checkout
runs small by default; ``full`` gives the assets' real-run defaults). It sets the defaults of
every asset's config class (:func:`profiled`), so the UI's launchpad, ``dagster`` CLI
commands, schedules, sensors and ``llmstack demo`` all run the same config. Each profile
writes under its own folder of the storage root, so switching profiles never overwrites
another profile's outputs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

PROFILE_ENV = "LLMSTACK_PROFILE"
DEFAULT_PROFILE = "demo"

DEMO: dict[str, dict[str, Any]] = {
    "sampled_mixture": {"token_budget": 400_000},
    "tokenizer": {"vocab_size": 4096},
    "pretrained_checkpoint": {
        "preset": "tiny",
        "seq_len": 128,
        "micro_batch_size": 8,
        "grad_accum_steps": 1,
        "max_steps": 300,
        "lr": 3e-3,
        "warmup_steps": 30,
        "eval_every": 100,
        "checkpoint_every": 100,
        "log_every": 25,
        "cpu_threads": 1,
    },
    # continued pretraining of the demo model on code, with 5% replay
    "midtraining_mixture": {"target_domains": ["code"], "token_budget": 100_000},
    "midtrained_checkpoint": {
        "seq_len": 128,
        "micro_batch_size": 8,
        "grad_accum_steps": 1,
        "max_steps": 100,
        "lr": 1e-3,
        "warmup_steps": 5,
        "eval_every": 50,
        "checkpoint_every": 50,
        "log_every": 25,
        "cpu_threads": 1,
    },
    # SFT of the midtrained demo model on the bundled conversations
    "sft_dataset": {"sources": "demo", "max_len": 256},
    "sft_checkpoint": {
        "seq_len": 255,
        "micro_batch_size": 8,
        "grad_accum_steps": 1,
        "max_steps": 60,
        "lr": 1e-3,
        "warmup_steps": 3,
        "eval_every": 30,
        "eval_batches": 2,
        "checkpoint_every": 30,
        "log_every": 10,
        "cpu_threads": 1,
    },
    # preference learning on HH-RLHF harmless pairs, from the demo SFT model
    "preference_dataset": {"sources": "demo", "max_len": 256, "max_prompt_len": 128},
    "reward_model": {
        "micro_batch_size": 8,
        "grad_accum_steps": 1,
        "max_steps": 40,
        "lr": 3e-4,
        "warmup_steps": 4,
        "eval_every": 20,
        "eval_batches": 2,
        "checkpoint_every": 20,
        "log_every": 10,
        "cpu_threads": 1,
    },
    "reference_logprobs": {"cpu_threads": 1},
    "dpo_checkpoint": {
        "micro_batch_size": 8,
        "grad_accum_steps": 1,
        "max_steps": 40,
        "lr": 1e-4,
        "warmup_steps": 4,
        "eval_every": 20,
        "eval_batches": 2,
        "checkpoint_every": 20,
        "log_every": 10,
        "cpu_threads": 1,
    },
    # online RL: a few GRPO steps of the demo model on GSM8K, format and safety rewards
    "rl_prompts": {"gsm8k": 32, "red_team": 16, "safe": 16, "val_fraction": 0.25,
                   "max_prompt_len": 192},  # fmt: skip
    "rl_checkpoint": {
        "group_size": 4,
        "max_new_tokens": 48,
        "micro_batch_size": 8,
        "grad_accum_steps": 1,
        "max_steps": 6,
        "lr": 1e-4,
        "eval_every": 3,
        "eval_prompts": 8,
        "checkpoint_every": 3,
        "log_every": 1,
        "cpu_threads": 1,
    },
    # constitutional AI with the demo SFT model in every role, on a few red-team prompts
    "cai_revisions": {
        "prompts": 8,
        "few_shot": False,
        "temperature": 1.0,  # greedy, the demo model loops (quarantined as loop:<step>)
        "max_new_tokens": 24,
        "batch_size": 8,
        "cpu_threads": 1,
    },
    "sl_cai_checkpoint": {
        "max_len": 256,
        "seq_len": 255,
        "micro_batch_size": 8,
        "grad_accum_steps": 1,
        "max_steps": 12,
        "lr": 1e-3,
        "warmup_steps": 2,
        "eval_every": 6,
        "eval_batches": 2,
        "checkpoint_every": 6,
        "log_every": 3,
        "cpu_threads": 1,
    },
    "ai_preferences": {
        "prompts": 24,
        "principles": 2,
        "few_shot": False,
        "max_new_tokens": 24,
        "max_len": 256,
        "max_prompt_len": 128,
        "val_fraction": 0.2,
        "cpu_threads": 1,
    },
    "rl_cai_checkpoint": {
        "micro_batch_size": 4,
        "grad_accum_steps": 1,
        "max_steps": 8,
        "lr": 1e-4,
        "warmup_steps": 2,
        "eval_every": 4,
        "eval_batches": 2,
        "checkpoint_every": 4,
        "log_every": 4,
        "cpu_threads": 1,
    },
    # every stage's checkpoint on a seeded slice of each evaluation set
    "safety_eval": {
        "rtp_per_category": 4,
        "rtp_samples": 2,
        "refusal_per_set": 8,
        "refusal_max_new_tokens": 32,
        "gsm8k_problems": 8,
        "gsm8k_max_new_tokens": 64,
        "humaneval_problems": 4,
        "humaneval_max_new_tokens": 64,
        "judge_prompts": 8,
        "judge_max_new_tokens": 32,
        "cpu_threads": 1,
    },
}

# The smallest size that still exercises every stage end to end (CI's pipeline test).
SMOKE: dict[str, dict[str, Any]] = {
    **DEMO,
    "sampled_mixture": {"token_budget": 100_000},
    "tokenizer": {"vocab_size": 1024},
    "pretrained_checkpoint": {
        **DEMO["pretrained_checkpoint"],
        "max_steps": 20,
        "warmup_steps": 5,
        "eval_every": 10,
        "checkpoint_every": 10,
        "log_every": 5,
    },
    "midtraining_mixture": {**DEMO["midtraining_mixture"], "token_budget": 30_000},
    "midtrained_checkpoint": {
        **DEMO["midtrained_checkpoint"],
        "max_steps": 10,
        "eval_every": 5,
        "checkpoint_every": 5,
        "log_every": 5,
    },
    "sft_checkpoint": {
        **DEMO["sft_checkpoint"],
        "max_steps": 6,
        "eval_every": 3,
        "checkpoint_every": 3,
        "log_every": 3,
    },
    "reward_model": {
        **DEMO["reward_model"],
        "max_steps": 6,
        "eval_every": 3,
        "checkpoint_every": 3,
        "log_every": 3,
    },
    "dpo_checkpoint": {
        **DEMO["dpo_checkpoint"],
        "max_steps": 6,
        "eval_every": 3,
        "checkpoint_every": 3,
        "log_every": 3,
    },
    "rl_prompts": {**DEMO["rl_prompts"], "gsm8k": 12, "red_team": 6, "safe": 8,
                   "val_fraction": 0.4, "max_prompt_len": 224},  # fmt: skip
    "rl_checkpoint": {
        **DEMO["rl_checkpoint"],
        "max_new_tokens": 16,
        "max_steps": 2,
        "eval_every": 1,
        "eval_prompts": 4,
        "checkpoint_every": 1,
    },
    "cai_revisions": {**DEMO["cai_revisions"], "prompts": 4, "rounds": 1},
    "sl_cai_checkpoint": {
        **DEMO["sl_cai_checkpoint"],
        "max_steps": 4,
        "eval_every": 2,
        "checkpoint_every": 2,
        "log_every": 2,
    },
    "ai_preferences": {**DEMO["ai_preferences"], "prompts": 12},
    "rl_cai_checkpoint": {
        **DEMO["rl_cai_checkpoint"],
        "max_steps": 4,
        "eval_every": 2,
        "checkpoint_every": 2,
        "log_every": 2,
    },
    "safety_eval": {
        **DEMO["safety_eval"],
        "rtp_per_category": 2,
        "refusal_per_set": 3,
        "gsm8k_problems": 3,
        "humaneval_problems": 2,
        "judge_prompts": 3,
    },
}

# The demo's curation and pretraining, then SmolLM2-135M-Instruct (the GGUF that set-up
# caches) continued on code: a real instruct model, on two CPU cores.
SMOL: dict[str, dict[str, Any]] = {
    **DEMO,
    "base_model": {"source": "hf", "hf_path": "smollm2"},
    "midtraining_mixture": {"target_domains": ["code"], "token_budget": 60_000},
    "midtrained_checkpoint": {
        "seq_len": 256,
        "micro_batch_size": 4,
        "grad_accum_steps": 1,
        "max_steps": 20,
        "lr": 1e-4,
        "warmup_steps": 2,
        "eval_every": 10,
        "eval_batches": 2,
        "checkpoint_every": 10,
        "log_every": 2,
        "cpu_threads": 2,
    },
    "sft_dataset": {"sources": "demo", "max_len": 512},
    "sft_checkpoint": {
        "seq_len": 511,
        "micro_batch_size": 2,
        "grad_accum_steps": 1,
        "max_steps": 10,
        "lr": 2e-5,
        "warmup_steps": 1,
        "eval_every": 5,
        "eval_batches": 1,
        "checkpoint_every": 5,
        "log_every": 1,
        "cpu_threads": 2,
    },
    "preference_dataset": {"sources": "demo", "max_len": 512, "max_prompt_len": 256},
    "reward_model": {
        **DEMO["reward_model"],
        "micro_batch_size": 2,
        "grad_accum_steps": 2,
        "max_steps": 20,
        "lr": 1e-5,
        "warmup_steps": 2,
        "eval_every": 10,
        "checkpoint_every": 10,
        "log_every": 2,
        "cpu_threads": 2,
    },
    "reference_logprobs": {"cpu_threads": 2, "batch_size": 4},
    "dpo_checkpoint": {
        **DEMO["dpo_checkpoint"],
        "micro_batch_size": 2,
        "grad_accum_steps": 2,
        "max_steps": 20,
        "lr": 1e-6,
        "warmup_steps": 2,
        "eval_every": 10,
        "checkpoint_every": 10,
        "log_every": 2,
        "cpu_threads": 2,
    },
    # GRPO on SmolLM2-135M-Instruct with the GSM8K rewards
    "rl_prompts": {"gsm8k": 128, "red_team": 16, "safe": 16, "val_fraction": 0.1,
                   "max_prompt_len": 256},  # fmt: skip
    "rl_checkpoint": {
        "rewards": {"gsm8k": 1.0, "format": 0.1},
        "group_size": 4,
        "max_new_tokens": 160,
        "micro_batch_size": 4,
        "grad_accum_steps": 2,
        "max_steps": 6,
        "lr": 1e-6,
        "eval_every": 3,
        "eval_prompts": 8,
        "generation_batch_size": 16,
        "checkpoint_every": 3,
        "log_every": 1,
        "cpu_threads": 2,
    },
    # constitutional AI: the SFT model answers; SmolLM2-135M-Instruct (the GGUF set-up caches)
    # critiques, revises and gives the AI feedback
    "cai_revisions": {
        "prompts": 8,
        "max_new_tokens": 64,
        "critic": "hf:smollm2",
        "reviser": "hf:smollm2",
        "batch_size": 8,
        "cpu_threads": 2,
    },
    "sl_cai_checkpoint": {
        "max_len": 512,
        "seq_len": 511,
        "micro_batch_size": 2,
        "grad_accum_steps": 1,
        "max_steps": 10,
        "lr": 2e-5,
        "warmup_steps": 1,
        "eval_every": 5,
        "eval_batches": 1,
        "checkpoint_every": 5,
        "log_every": 1,
        "cpu_threads": 2,
    },
    "ai_preferences": {
        "prompts": 16,
        "max_new_tokens": 64,
        "feedback_model": "hf:smollm2",
        "max_len": 512,
        "max_prompt_len": 256,
        "val_fraction": 0.2,
        "batch_size": 8,
        "cpu_threads": 2,
    },
    "rl_cai_checkpoint": {
        "micro_batch_size": 2,
        "grad_accum_steps": 2,
        "max_steps": 10,
        "lr": 1e-6,
        "warmup_steps": 1,
        "eval_every": 5,
        "eval_batches": 2,
        "checkpoint_every": 5,
        "log_every": 1,
        "reference_batch_size": 4,
        "cpu_threads": 2,
    },
    "safety_eval": {
        **DEMO["safety_eval"],
        "rtp_per_category": 5,
        "refusal_per_set": 10,
        "refusal_max_new_tokens": 48,
        "gsm8k_problems": 10,
        "gsm8k_max_new_tokens": 192,
        "humaneval_problems": 5,
        "humaneval_max_new_tokens": 192,
        "judge_prompts": 10,
        "judge_max_new_tokens": 96,
        "batch_size": 16,
        "cpu_threads": 2,
    },
}

PROFILES = {"demo": DEMO, "smoke": SMOKE, "smol": SMOL, "full": {}}

ConfigClass = TypeVar("ConfigClass")


def active_profile() -> str:
    """The profile named by ``$LLMSTACK_PROFILE`` (default ``demo``)."""
    name = os.environ.get(PROFILE_ENV, "") or DEFAULT_PROFILE
    if name not in PROFILES:
        raise ValueError(
            f"{PROFILE_ENV}={name!r} is not a profile; choose one of {sorted(PROFILES)}"
        )
    return name


def profiled(asset_name: str) -> Callable[[ConfigClass], ConfigClass]:
    """Class decorator: the active profile's settings for ``asset_name`` become the defaults
    of that asset's config class (which Dagster reads when the asset is defined)."""

    def apply(cls: ConfigClass) -> ConfigClass:
        fields = cls.model_fields  # type: ignore[attr-defined]
        profile = active_profile()
        for name, value in PROFILES[profile].get(asset_name, {}).items():
            if name not in fields:
                raise KeyError(f"profile {profile!r} sets unknown field {asset_name}.{name}")
            fields[name].default, fields[name].default_factory = value, None
        cls.model_rebuild(force=True)  # type: ignore[attr-defined]
        return cls

    return apply
