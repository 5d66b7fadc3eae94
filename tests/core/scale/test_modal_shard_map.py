"""The Modal engine up to the network: app, image and options are built lazily; the calls
that would reach Modal's servers (``App.run``, ``Function.map``) are replaced by local ones."""

from contextlib import contextmanager
from functools import partial

import modal
import pytest

from llmstack_dagster.core.dispatch.modal_app import ModalSpec, image_packages
from llmstack_dagster.core.scale import modal_backend
from llmstack_dagster.core.scale.modal_backend import ModalShardMap, run_payload
from llmstack_dagster.core.scale.shard_map import StageOptions

SETUPS: list[int] = []


def scaled(factor: int, x: int) -> int:
    return factor * x


def load_model() -> int:
    SETUPS.append(1)
    return 10


@pytest.fixture
def offline_modal(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Run ``Function.map`` inputs through ``run_payload`` here; record the call options."""
    calls: list[dict] = []

    @contextmanager
    def run(self, *args, **kwargs):
        yield self

    def fake_map(self, inputs, order_outputs=True, **kwargs):
        calls.append({"order_outputs": order_outputs})
        return (run_payload(payload) for payload in inputs)

    monkeypatch.setattr(modal.App, "run", run)
    monkeypatch.setattr(modal.Function, "map", fake_map)
    monkeypatch.setattr(modal_backend, "_container_state", {})
    return calls


def test_map_and_state_through_payloads(offline_modal) -> None:
    engine = ModalShardMap(ModalSpec(app_name="t", gpu="A10G", retries=1))
    assert engine.map(partial(scaled, 3), [1, 2, 3]) == [3, 6, 9]
    SETUPS.clear()
    assert engine.map_with_state(load_model, lambda s, x: s + x, [1, 2]) == [11, 12]
    assert len(SETUPS) == 1  # once per container (here: one)
    assert offline_modal == [{"order_outputs": True}, {"order_outputs": True}]


def test_function_options_reuse_the_training_pinning() -> None:
    engine = ModalShardMap(ModalSpec(app_name="t", gpu="A10G", memory_mb=4096))
    cpu = engine.function_options(StageOptions(num_cpus=2))
    gpu = engine.function_options(StageOptions(num_gpus=1, memory_mb=9000))
    assert cpu["gpu"] is None and gpu["gpu"] == "A10G"
    assert cpu["memory"] == 4096 and gpu["memory"] == 9000 and cpu["serialized"]
    packages = image_packages(modal_backend.CURATION_PACKAGES)
    assert any(p.startswith("numba==") for p in packages)
    assert all("==" in p and "+" not in p for p in packages)


def test_local_roots_are_refused() -> None:
    engine = ModalShardMap()
    for root in ("./data", "/tmp/x", "file:///tmp/x", "memory://x"):
        with pytest.raises(ValueError, match="CloudBucketMount"):
            engine.require_shared_root(root)
    engine.require_shared_root("s3://bucket/prefix")
