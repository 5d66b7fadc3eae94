"""The HF export loads the same in transformers 4.x as in the venv's 5.x.

Each 4.x release lives in its own folder under ``.venv/transformers4/`` (built by
``scripts/setup_transformers4.sh`` from PyPI when missing) and shadows the venv's transformers
through ``PYTHONPATH`` in a subprocess; torch and safetensors still come from the venv. The
same check script also runs against the venv's own transformers 5.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from support.checkpoints import SMALL, write_checkpoint

from llmstack_dagster.core.models.generation import generate_batch
from llmstack_dagster.core.training.hf_export import export_hf
from llmstack_dagster.core.training.tokenizer import SPECIAL_TOKENS, load_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[3]
SETUP = REPO_ROOT / "scripts" / "setup_transformers4.sh"
SITES = REPO_ROOT / ".venv" / "transformers4"
# The oldest release pyproject allows, and the last 4.x; "venv" is the installed 5.x.
VERSIONS = ["4.45.2", "4.57.6", "venv"]
TEXTS = [
    "The quick brown fox, 2024!",
    "  def f(x):\n\treturn x[1]  # ünïcödé ✓",
    "<|user|>To be, or not to be<|end_turn|><|eos|>",
]
PROMPT_LEN, NEW_TOKENS = 5, 8

CHECK = r"""
import json, sys
import torch, transformers
from safetensors.torch import load_file
from transformers import (
    AutoModelForCausalLM, AutoTokenizer, GenerationConfig, PreTrainedTokenizerFast,
)

folder, ref_file, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
ref = load_file(ref_file)
model = AutoModelForCausalLM.from_pretrained(folder).eval()
with torch.no_grad():
    logits = model(ref["idx"]).logits
    greedy = model.generate(ref["prompt"], do_sample=False, max_new_tokens=int(ref["new"]))
tokenizers = []
for cls in (AutoTokenizer, PreTrainedTokenizerFast):
    tok = cls.from_pretrained(folder)
    ids = [tok(text).input_ids for text in texts]
    tokenizers.append({
        "class": type(tok).__name__,
        "ids": ids,
        "decoded": [tok.decode(i) for i in ids],
        "special": [tok.bos_token_id, tok.eos_token_id, tok.pad_token_id],
        "skip": [tok.decode(i, skip_special_tokens=True) for i in ids],
        "all_special": sorted(tok.all_special_tokens),
        "max_len": tok.model_max_length,
    })
gen = GenerationConfig.from_pretrained(folder)
print(json.dumps({
    "version": transformers.__version__,
    "file": transformers.__file__,
    "dtype": str(next(model.parameters()).dtype),
    "rope_theta": getattr(model.config, "rope_theta", None)
        or model.config.rope_parameters["rope_theta"],
    "max_abs_diff": float((logits.float() - ref["logits"]).abs().max()),
    "greedy": greedy[0, ref["prompt"].shape[1]:].tolist(),
    "tokenizers": tokenizers,
    "generation": [gen.bos_token_id, gen.eos_token_id, gen.pad_token_id, gen.do_sample,
                   gen.temperature, gen.top_p, gen.top_k],
}))
"""


def _strip_special(text: str) -> str:
    for token in SPECIAL_TOKENS.values():
        text = text.replace(token, "")
    return text


def _index_reachable() -> bool:
    """Whether pip's index (``PIP_INDEX_URL`` or PyPI) serves the transformers page.

    An HTTP request rather than a bare TCP connect: sandboxes may accept any connection.
    """
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    if index.startswith("file:"):
        return True
    try:
        with urllib.request.urlopen(f"{index}/transformers/", timeout=15) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


def transformers_site(version: str) -> Path:
    """The folder holding ``version`` (installing it first if needed)."""
    site = SITES / version
    if (site / "TRANSFORMERS_VERSION").is_file():
        return site
    if not _index_reachable():
        pytest.skip(
            f"transformers {version} is missing from {site} and the package index is unreachable"
        )
    env = os.environ | {"PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(SETUP), version, str(site)], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{SETUP.name} could not install transformers {version} "
            f"(rc {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
    return site


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tokenizer_file) -> tuple[Path, Path, dict]:
    """An export, a file of our reference tensors, and what each check should find."""
    root = tmp_path_factory.mktemp("hf4")
    model, ckpt = write_checkpoint(root / "run", SMALL.model_copy(update={"tie_embeddings": False}))
    hf_dir = export_hf(ckpt, root / "hf", tokenizer_file)
    tok = load_tokenizer(tokenizer_file)
    idx = torch.randint(0, SMALL.vocab_size, (2, 40), generator=torch.Generator().manual_seed(3))
    prompt = idx[:1, :PROMPT_LEN].clone()
    eos = tok.token_to_id("<|eos|>")
    with torch.no_grad():
        logits = model(idx)
    (greedy,) = generate_batch(model.eval(), [prompt[0].tolist()], NEW_TOKENS, stop_ids={eos})
    ref = root / "ref.safetensors"
    save_file(
        {"idx": idx, "logits": logits, "prompt": prompt, "new": torch.tensor(NEW_TOKENS)}, str(ref)
    )
    expected = {
        "ids": [tok.encode(text).ids for text in TEXTS],
        "special": [tok.token_to_id(t) for t in ("<|bos|>", "<|eos|>", "<|pad|>")],
        "end_turn": tok.token_to_id("<|end_turn|>"),
        "skip": [_strip_special(text) for text in TEXTS],
        "eos": eos,
        "greedy": greedy,
    }
    return hf_dir, ref, expected


def run_check(hf_dir: Path, ref: Path, site: Path | None) -> dict:
    """Load the export in a fresh interpreter (with ``site`` first on the path)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if site is not None:
        env["PYTHONPATH"] = str(site)
    proc = subprocess.run(
        [sys.executable, "-c", CHECK, str(hf_dir), str(ref), json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ref.parent,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS)
def test_export_loads_with_transformers(exported, version) -> None:
    hf_dir, ref, expected = exported
    site = None if version == "venv" else transformers_site(version)
    got = run_check(hf_dir, ref, site)
    if site is None:
        assert got["version"].startswith("5.")
    else:
        assert got["version"] == version and got["file"].startswith(str(site))
    assert got["dtype"] == "torch.float32" and got["rope_theta"] == SMALL.rope_theta
    assert got["max_abs_diff"] <= 1e-4
    greedy = got["greedy"]
    if expected["eos"] in greedy:  # HF keeps the EOS it stops at; ours drops it
        greedy = greedy[: greedy.index(expected["eos"])]
    assert greedy == expected["greedy"]
    for tok in got["tokenizers"]:
        assert tok["ids"] == expected["ids"], tok["class"]
        assert tok["decoded"] == TEXTS
        assert tok["special"] == expected["special"]
        assert tok["all_special"] == sorted(SPECIAL_TOKENS.values())
        assert tok["skip"] == expected["skip"]
        assert tok["max_len"] == SMALL.max_seq_len
    bos, eos, pad = expected["special"]
    stops = [eos, expected["end_turn"]]  # generation stops at a document's and a turn's end
    assert got["generation"] == [bos, stops, pad, True, 0.8, 0.9, 0]
