"""The HF backends of the three attributes run their real loading code up to the hub: offline and
with an empty cache, each raises ``HubModelError`` naming its model id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Runs in a fresh interpreter so the offline variables are read when huggingface_hub imports.
_PROBE = """
import json
from llmstack_dagster.core.curation.quality.attributes.domain_classifier import (
    DomainClassifierConfig, load_domain_classifier)
from llmstack_dagster.core.curation.quality.attributes.hf import HubModelError
from llmstack_dagster.core.curation.quality.attributes.quality_classifier import (
    QualityClassifierConfig, load_quality_classifier)
from llmstack_dagster.core.curation.quality.attributes.toxicity import (
    ToxicityConfig, load_toxicity_scorer)
from llmstack_dagster.core.curation.quality.attributes.embeddings import EmbeddingConfig, embed

loaders = {
    "quality": lambda: load_quality_classifier(QualityClassifierConfig(backend="hf"), None),
    "domain": lambda: load_domain_classifier(DomainClassifierConfig(backend="hf")),
    "toxicity": lambda: load_toxicity_scorer(ToxicityConfig(backend="hf")),
    "embedding": lambda: embed(
        ["x"], EmbeddingConfig(model="sentence-transformers/all-mpnet-base-v2")),
}
out = {}
for name, load in loaders.items():
    try:
        load()
        out[name] = {"error": None}
    except HubModelError as err:
        out[name] = {"error": "HubModelError", "message": str(err)}
    except Exception as err:
        out[name] = {"error": type(err).__name__, "message": str(err)}
print(json.dumps(out))
"""

MODEL_IDS = {
    "quality": "nvidia/quality-classifier-deberta",
    "domain": "nvidia/domain-classifier",
    "toxicity": "s-nlp/roberta_toxicity_classifier",
    "embedding": "sentence-transformers/all-mpnet-base-v2",
}


@pytest.fixture(scope="module")
def offline_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    home = tmp_path_factory.mktemp("hf_home")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
    }
    env.pop("HF_TOKEN", None)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parents[4],
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("attribute", sorted(MODEL_IDS))
def test_hf_backend_offline_raises_hub_error_naming_model(
    offline_errors: dict[str, dict], attribute: str
) -> None:
    result = offline_errors[attribute]
    assert result["error"] == "HubModelError", result
    assert repr(MODEL_IDS[attribute]) in result["message"]
    # the cause is the hub boundary (no network, empty cache), not an import or format error
    assert "(LocalEntryNotFoundError:" in result["message"] or "(OSError:" in result["message"]
