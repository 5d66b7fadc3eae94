"""Hugging Face hub models for the attributes; every failure names the model.

NVIDIA's quality and domain classifiers are a DeBERTa-v3 encoder with a linear head on the first
token (``PyTorchModelHubMixin`` checkpoints: ``config.json`` names the ``base_model`` and
``id2label``; ``model.safetensors`` holds ``model.*`` and ``fc.*`` weights).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np

MAX_TOKENS = 512


class HubModelError(RuntimeError):
    """A hub model could not be loaded (hub unreachable, unknown id, wrong format)."""


def hub_error(model_id: str, err: Exception) -> HubModelError:
    return HubModelError(
        f"could not load Hugging Face model {model_id!r} ({type(err).__name__}: {err}); "
        "is the hub reachable (HF_HUB_OFFLINE unset, network) or the model cached?"
    )


def nvidia_deberta_classifier(model_id: str) -> tuple[Callable[[list[str]], np.ndarray], list[str]]:
    """(predict_proba(texts) -> (n, k) array, labels) for an NVIDIA DeBERTa classifier."""
    try:
        import torch
        from huggingface_hub import hf_hub_download
        from safetensors.torch import load_file
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        config: dict[str, Any] = json.loads(
            open(hf_hub_download(model_id, "config.json")).read()  # noqa: SIM115
        )
        labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
        encoder = AutoModel.from_config(AutoConfig.from_pretrained(config["base_model"]))
        head = torch.nn.Linear(encoder.config.hidden_size, len(labels))
        state = load_file(hf_hub_download(model_id, "model.safetensors"))
        encoder.load_state_dict(
            {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")},
            strict=False,
        )
        head.load_state_dict({k.removeprefix("fc."): v for k, v in state.items() if "fc." in k})
        tokenizer = AutoTokenizer.from_pretrained(model_id)
    except Exception as err:  # the boundary: report which model failed and why
        raise hub_error(model_id, err) from err
    encoder.eval()

    def predict_proba(texts: list[str]) -> np.ndarray:
        batch = tokenizer(
            texts, truncation=True, max_length=MAX_TOKENS, padding=True, return_tensors="pt"
        )
        with torch.no_grad():
            hidden = encoder(**batch).last_hidden_state[:, 0, :]
            return torch.softmax(head(hidden), dim=-1).numpy()

    return predict_proba, labels


def text_classification_pipeline(model_id: str) -> Callable[[list[str]], list[list[dict]]]:
    """A transformers text-classification pipeline returning all label scores per text."""
    try:
        from transformers import pipeline

        classifier = pipeline("text-classification", model=model_id, device="cpu")
    except Exception as err:
        raise hub_error(model_id, err) from err

    def classify(texts: list[str]) -> list[list[dict]]:
        return classifier(texts, top_k=None, truncation=True, max_length=MAX_TOKENS)

    return classify
