"""Export a reward-model checkpoint as a Hugging Face ``LlamaForSequenceClassification`` folder
(one label), which ``AutoModelForSequenceClassification.from_pretrained`` loads and which
scores a right-padded sequence at its last non-padding token, as our reward model does.

The folder is the causal export of the same checkpoint (``export_for_tokenizer``: config,
tokenizer files and chat template) with the LM head replaced by ``score.weight`` and the
config's architecture, label count and padding id set.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from safetensors.torch import load_file, save_file

from llmstack_dagster.core.training.atomic import atomic_dir
from llmstack_dagster.core.training.hf_export import write_json
from llmstack_dagster.core.training.hf_import import export_for_tokenizer

WEIGHTS = "model.safetensors"
CAUSAL_ONLY = ("generation_config.json",)


def export_reward_model(checkpoint: Path, dest: Path, tokenizer_file: Path, pad_id: int) -> Path:
    """Write the sequence-classification folder of ``checkpoint`` (atomically)."""
    with tempfile.TemporaryDirectory() as tmp:
        causal = export_for_tokenizer(Path(checkpoint), Path(tmp) / "causal", tokenizer_file)
        state = load_file(str(causal / WEIGHTS))
        state.pop("lm_head.weight", None)
        state["score.weight"] = load_file(str(Path(checkpoint) / WEIGHTS))["score.weight"]
        config = json.loads((causal / "config.json").read_text())
        config |= {
            "architectures": ["LlamaForSequenceClassification"],
            "num_labels": 1,
            "id2label": {"0": "reward"},
            "label2id": {"reward": 0},
            "pad_token_id": pad_id,
            "problem_type": "regression",
        }
        with atomic_dir(Path(dest)) as out:
            for item in causal.iterdir():
                if item.name not in (WEIGHTS, "config.json", *CAUSAL_ONLY):
                    shutil.copy2(item, out / item.name)
            write_json(out / "config.json", config)
            save_file({k: v.contiguous() for k, v in state.items()}, str(out / WEIGHTS),
                      metadata={"format": "pt"})  # fmt: skip
    return Path(dest)
