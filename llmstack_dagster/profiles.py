"""Config profiles: the same assets, sized for a run. The demo is the real pipeline under a
small profile (a few hundred thousand tokens, a 4k vocabulary, a 1.3M-parameter model)."""

from typing import Any

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
}

PROFILES = {"demo": DEMO, "smoke": SMOKE, "full": {}}


def run_config(profile: str, asset_names: list[str]) -> dict[str, Any]:
    """Dagster run config (``ops`` section) of ``profile`` for the selected assets."""
    settings = PROFILES[profile]
    return {"ops": {name: {"config": settings[name]} for name in asset_names if name in settings}}
