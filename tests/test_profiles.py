"""One active profile for every entry point: config defaults, storage root, run tags."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from dagster import Config

from llmstack_dagster.profiles import PROFILES, active_profile, profiled

PROBE = """
import json
from llmstack_dagster.assets.pretraining import PretrainAssetConfig, TokenizerAssetConfig
from llmstack_dagster.assets.selection import MixtureAssetConfig
from llmstack_dagster.definitions import defs
from llmstack_dagster.resources.storage import StorageResource
schema = defs.resolve_assets_def("tokenizer").op.config_schema.as_field().config_type
print(json.dumps({
    "vocab": TokenizerAssetConfig().vocab_size,
    "launchpad_vocab": schema.fields["vocab_size"].default_value,
    "budget": MixtureAssetConfig().token_budget,
    "preset": PretrainAssetConfig().preset,
    "root": StorageResource().root,
}))
"""


def _probe(profile: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("LLMSTACK_PROFILE",
                                                           "LLMSTACK_STORAGE_ROOT")}  # fmt: skip
    if profile is not None:
        env["LLMSTACK_PROFILE"] = profile
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_the_active_profile_sets_every_entry_points_defaults() -> None:
    demo, full = _probe(None), _probe("full")
    assert demo == {"vocab": 4096, "launchpad_vocab": 4096, "budget": 400_000,
                    "preset": "tiny", "root": "./data/demo"}  # fmt: skip
    assert full == {"vocab": 32768, "launchpad_vocab": 32768, "budget": 2_500_000_000,
                    "preset": "d12", "root": "./data/full"}  # fmt: skip


def test_an_unknown_profile_names_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("LLMSTACK_PROFILE", "huge")
    with pytest.raises(ValueError, match="LLMSTACK_PROFILE='huge' is not a profile"):
        active_profile()


def test_a_profile_naming_an_unknown_field_is_an_error(monkeypatch) -> None:
    monkeypatch.setitem(PROFILES, "demo", {"probe": {"nope": 1}})

    with pytest.raises(KeyError, match="probe.nope"):

        @profiled("probe")
        class ProbeConfig(Config):
            size: int = 1
