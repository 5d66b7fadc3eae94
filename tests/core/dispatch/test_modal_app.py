"""The Modal app and function spec built from presets (no network: Modal objects are lazy)."""

import modal
import pytest
import torch

from llmstack_dagster.core.dispatch import modal_app
from llmstack_dagster.core.dispatch.remote import VOLUME_MOUNT, train_remote


def test_presets_follow_the_seed_and_overrides_win() -> None:
    testing = modal_app.resolve_spec("testing")
    assert (testing.gpu, testing.memory_mb, testing.timeout_s) == ("T4", 16_384, 3600)
    assert testing.max_steps is not None
    production = modal_app.resolve_spec("production")
    assert (production.gpu, production.memory_mb, production.timeout_s) == ("A100", 32_768, 7200)
    assert production.max_steps is None
    custom = modal_app.resolve_spec("production", gpu="H100:8", memory_mb=None, retries=5)
    assert (custom.gpu, custom.memory_mb, custom.retries) == ("H100:8", 32_768, 5)


@pytest.mark.parametrize(("gpu", "count"), [("T4", 1), ("A100-80GB", 1), ("H100:8", 8)])
def test_gpu_count(gpu: str, count: int) -> None:
    assert modal_app.gpu_count(gpu) == count


def test_image_pins_the_local_torch_and_runtime_packages() -> None:
    packages = modal_app.image_packages()
    assert f"torch=={torch.__version__.split('+')[0]}" in packages
    names = {p.split("==")[0] for p in packages}
    assert {"torch", "safetensors", "tokenizers", "dagster-pipes", "tensorboard"} <= names
    assert all("==" in p and "+" not in p for p in packages)


def test_function_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict = {}
    real_function = modal.App.function

    def spy(self, **kwargs):
        seen.update(kwargs)
        return real_function(self, **kwargs)

    monkeypatch.setattr(modal.App, "function", spy)
    spec = modal_app.resolve_spec(
        "production", gpu="H100:8", retries=3, timeout_s=86_400, modal_secrets=["hf"]
    )
    built = modal_app.build_app(spec, env_secrets={"WANDB_API_KEY": "k"})
    assert isinstance(built.app, modal.App) and built.app.name == "llmstack-train"
    assert isinstance(built.function, modal.Function)
    assert isinstance(built.volume, modal.Volume)
    assert seen["name"] == modal_app.FUNCTION_NAME
    assert (seen["gpu"], seen["memory"], seen["timeout"]) == ("H100:8", 32_768, 86_400)
    assert isinstance(seen["retries"], modal.Retries)
    assert seen["volumes"] == {VOLUME_MOUNT: built.volume}
    assert len(seen["secrets"]) == 2 and all(isinstance(s, modal.Secret) for s in seen["secrets"])
    assert isinstance(seen["image"], modal.Image)
    # The function is the module-level remote body, importable by name in the container.
    assert train_remote.__module__ == "llmstack_dagster.core.dispatch.remote"


def test_timeout_beyond_modal_limit_is_rejected() -> None:
    with pytest.raises(ValueError):
        modal_app.resolve_spec("testing", timeout_s=25 * 3600)
