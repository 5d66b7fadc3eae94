"""The Modal app for training: image, volume and GPU function, from a typed spec.

Presets follow the seed: ``testing`` is a T4 with 16 GB RAM, a 1 h timeout and at most
``max_steps`` steps; ``production`` is an A100 with 32 GB RAM and a 2 h timeout. Any field
given explicitly overrides the preset. Nothing here talks to Modal's servers: ``modal.App``,
``modal.Image`` and ``modal.Volume.from_name`` are lazy until the app runs.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Literal

import modal
from pydantic import BaseModel, Field

from llmstack_dagster.core.dispatch.remote import VOLUME_MOUNT, train_remote

FUNCTION_NAME = "train"
PACKAGE = "llmstack_dagster"
# What the training entrypoint imports at run time (curation dependencies stay local).
RUNTIME_PACKAGES = (
    "torch",
    "numpy",
    "safetensors",
    "tokenizers",
    "pydantic",
    "pyarrow",
    "fsspec",
    "xxhash",
    "tensorboard",
    "dagster-pipes",
)
TRAINING_ENV = {"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}


class ModalSpec(BaseModel):
    """Everything that shapes the Modal app and its function."""

    app_name: str = "llmstack-train"
    volume_name: str = "llmstack-train"
    gpu: str = "T4"
    memory_mb: int = Field(default=16_384, ge=1024)
    timeout_s: int = Field(default=3600, ge=60, le=24 * 3600)
    retries: int = Field(default=2, ge=0, le=10)
    max_steps: int | None = Field(default=None, ge=1, description="cap on TrainConfig.max_steps")
    python_version: str = f"{sys.version_info.major}.{sys.version_info.minor}"
    modal_secrets: list[str] = Field(default_factory=list, description="modal.Secret names")


PRESETS: dict[str, dict[str, Any]] = {
    "testing": {"gpu": "T4", "memory_mb": 16_384, "timeout_s": 3600, "max_steps": 200},
    "production": {"gpu": "A100", "memory_mb": 32_768, "timeout_s": 7200, "max_steps": None},
}
Preset = Literal["testing", "production"]


def resolve_spec(preset: Preset, **overrides: Any) -> ModalSpec:
    """The preset, then every override that is not None."""
    values = PRESETS[preset] | {k: v for k, v in overrides.items() if v is not None}
    return ModalSpec.model_validate(values)


def gpu_count(gpu: str) -> int:
    """GPUs per container for a Modal GPU string: ``"T4"`` -> 1, ``"H100:8"`` -> 8."""
    match = re.fullmatch(r"[^:]+(?::(\d+))?", gpu)
    if match is None:
        raise ValueError(f"not a Modal GPU spec: {gpu!r}")
    return int(match.group(1) or 1)


def pinned(package: str) -> str:
    """``name==version`` of the locally installed distribution, local tag dropped."""
    return f"{package}=={version(package).split('+')[0]}"


def image_packages(packages: Sequence[str] = RUNTIME_PACKAGES) -> list[str]:
    """``name==version`` of each package, as installed on this machine."""
    return [pinned(p) for p in packages]


def build_image(
    spec: ModalSpec,
    packages: Sequence[str] = RUNTIME_PACKAGES,
    env: dict[str, str] | None = None,
) -> modal.Image:
    """Debian slim, the pinned packages (default: the training runtime's), the environment
    (default: the training runtime's), and this package's source."""
    return (
        modal.Image.debian_slim(python_version=spec.python_version)
        .pip_install(*image_packages(packages))
        .env(TRAINING_ENV if env is None else env)
        .add_local_python_source(PACKAGE)
    )


@dataclass
class ModalApp:
    app: modal.App
    volume: modal.Volume
    function: modal.Function


def function_options(
    spec: ModalSpec, image: modal.Image, volume: modal.Volume, secrets: list[modal.Secret]
) -> dict[str, Any]:
    """Keyword arguments of ``app.function`` for the training function."""
    retries = modal.Retries(max_retries=spec.retries, backoff_coefficient=1.0, initial_delay=10.0)
    return {
        "name": FUNCTION_NAME,
        "image": image,
        "gpu": spec.gpu,
        "memory": spec.memory_mb,
        "timeout": spec.timeout_s,
        "retries": retries if spec.retries else None,
        "volumes": {VOLUME_MOUNT: volume},
        "secrets": secrets,
        "include_source": False,
    }


def build_app(spec: ModalSpec, env_secrets: dict[str, str] | None = None) -> ModalApp:
    """The app with its volume and the ``train`` function (``remote.train_remote``).

    ``env_secrets`` become an in-memory ``modal.Secret``; named Modal secrets are looked up.
    """
    volume = modal.Volume.from_name(spec.volume_name, create_if_missing=True)
    secrets = [modal.Secret.from_name(name) for name in spec.modal_secrets]
    if env_secrets:
        secrets.append(modal.Secret.from_dict(dict(env_secrets)))
    image = build_image(spec)
    app = modal.App(spec.app_name, image=image)
    function = app.function(**function_options(spec, image, volume, secrets))(train_remote)
    return ModalApp(app, volume, function)
