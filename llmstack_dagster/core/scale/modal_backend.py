"""The Modal engine: ``Function.map`` over shard descriptions, one container per input.

It reuses the training dispatch's spec and pinning (:mod:`llmstack_dagster.core.dispatch.
modal_app`): the image is Debian slim with this machine's versions of the curation packages
and this package's source. Shards must live on an object store (``s3://``, ``gs://``) that
every container reaches through fsspec: a Modal ``CloudBucketMount`` cannot rename, and every
write here is a rename (:meth:`Storage.open_atomic`). Work goes out as cloudpickle payloads,
so stage functions stay engine-agnostic; stateful stages keep their state per container.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import cloudpickle
import modal

from llmstack_dagster.core.dispatch.modal_app import ModalSpec, build_image
from llmstack_dagster.core.scale.ray_backend import NUMBA_CACHE_DIR
from llmstack_dagster.core.scale.shard_map import (
    DEFAULT_OPTIONS,
    Item,
    Result,
    ShardMap,
    StageOptions,
    State,
    reported,
)

FUNCTION_NAME = "run_shard"
# What the curation stages import inside a container.
CURATION_PACKAGES = (
    "numpy",
    "pyarrow",
    "fsspec",
    "s3fs",
    "gcsfs",
    "pydantic",
    "numba",
    "xxhash",
    "zstandard",
    "regex",
    "kenlm",
    "sentencepiece",
    "tokenizers",
    "warcio",
    "trafilatura",
    "pyyaml",
    "cloudpickle",
)
_container_state: dict[str, Any] = {}


def build_curation_image(spec: ModalSpec) -> modal.Image:
    """The training dispatch's image with the curation packages and a writable numba cache."""
    return build_image(
        spec, CURATION_PACKAGES, {"PYTHONUNBUFFERED": "1", "NUMBA_CACHE_DIR": NUMBA_CACHE_DIR}
    )


def run_payload(payload: bytes) -> bytes:
    """Inside a container: unpickle (setup, fn, item), run it, pickle the result."""
    setup, fn, item = cloudpickle.loads(payload)
    if setup is None:
        return cloudpickle.dumps(fn(item))
    key = hashlib.sha256(cloudpickle.dumps(setup)).hexdigest()
    if key not in _container_state:
        _container_state[key] = setup()
    return cloudpickle.dumps(fn(_container_state[key], item))


def modal_gpu(options: StageOptions, gpu: str) -> str | None:
    """Modal GPU string of a stage: none unless the stage asks for one."""
    return gpu if options.num_gpus > 0 else None


class ModalShardMap(ShardMap):
    """``Function.map`` on Modal; ``spec`` gives app name, memory, timeout, retries, GPU type."""

    name = "modal"

    def __init__(
        self, spec: ModalSpec | None = None, secrets: Sequence[str] = (), window: int = 32
    ) -> None:
        self.spec = spec or ModalSpec(app_name="llmstack-curation")
        self.secrets = list(secrets)
        self.window = window

    def function_options(self, options: StageOptions) -> dict[str, Any]:
        """Keyword arguments of ``app.function`` for one stage."""
        spec = self.spec
        return {
            "name": FUNCTION_NAME,
            "image": build_curation_image(spec),
            "gpu": modal_gpu(options, spec.gpu),
            "cpu": options.num_cpus,
            "memory": options.memory_mb or spec.memory_mb,
            "timeout": spec.timeout_s,
            "retries": spec.retries or None,
            "secrets": [modal.Secret.from_name(name) for name in self.secrets],
            "serialized": True,
        }

    def build(self, options: StageOptions) -> tuple[modal.App, modal.Function]:
        """The app and its shard function (lazy: nothing reaches Modal until ``app.run``)."""
        app = modal.App(self.spec.app_name)
        return app, app.function(**self.function_options(options))(run_payload)

    def _run(
        self,
        payloads: list[bytes],
        options: StageOptions,
        on_result: Callable[[Any], None] | None = None,
    ) -> list[Any]:
        app, function = self.build(options)
        with app.run():
            outputs = function.map(payloads, order_outputs=True)
            return reported((cloudpickle.loads(out) for out in outputs), on_result)

    def map(
        self,
        fn: Callable[[Item], Result],
        items: Sequence[Item],
        options: StageOptions = DEFAULT_OPTIONS,
        on_result: Callable[[Result], None] | None = None,
    ) -> list[Result]:
        payloads = [cloudpickle.dumps((None, fn, item)) for item in items]
        return self._run(payloads, options, on_result)

    def map_with_state(
        self,
        setup: Callable[[], State],
        fn: Callable[[State, Item], Result],
        items: Sequence[Item],
        options: StageOptions = DEFAULT_OPTIONS,
        on_result: Callable[[Result], None] | None = None,
    ) -> list[Result]:
        payloads = [cloudpickle.dumps((setup, fn, item)) for item in items]
        return self._run(payloads, options, on_result)

    def width(self) -> int:
        """Modal scales containers per call: a windowed stage submits this many at a time."""
        return self.window

    def require_shared_root(self, root: str) -> None:
        if "://" not in root or root.startswith(("file://", "local://", "memory://")):
            raise ValueError(
                f"Modal containers cannot see the storage root {root!r}; use s3:// or gs:// "
                "(fsspec), not a CloudBucketMount, which cannot rename"
            )
