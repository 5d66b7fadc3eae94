"""The frozen reference model's log-probabilities of every preference pair, computed once.

DPO compares the policy with a reference model; instead of running the reference at every
step, ``reference_logprobs`` scores every pair once and stores it. The cache is keyed by what
the numbers depend on (:class:`ReferenceKey`): the reference weights' SHA-256, the data
version, the tokenizer and chat template, and the truncation settings. Reading it with any
other key, or for a pair it lacks, is an error naming what differs: never a silent fallback to
the policy as its own reference.

Layout of a cache folder::

    key.json                     ReferenceKey (written last)
    logprobs.parquet             id, split, chosen_logp, rejected_logp, chosen_tokens,
                                 rejected_tokens (float64 sums over each reply's tokens)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from pydantic import BaseModel

from llmstack_dagster.core.models.generation import Autocast
from llmstack_dagster.core.posttraining.logprobs import sequence_logprobs
from llmstack_dagster.core.posttraining.pair_data import PreferencePairs
from llmstack_dagster.core.posttraining.preference_index import PreferenceIndex
from llmstack_dagster.core.training.atomic import write_text_atomic

KEY_FILE = "key.json"
LOGPROBS_FILE = "logprobs.parquet"
SPLITS = ("train", "val")


class ReferenceCacheError(ValueError):
    """The cached reference log-probabilities are missing or belong to other inputs."""


class ReferenceKey(BaseModel):
    weights_sha256: str
    data_version: str | None
    tokenizer_hash: str
    template: str
    max_len: int
    max_prompt_len: int

    @property
    def id(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:24]


def reference_key(weights_sha256: str, index: PreferenceIndex) -> ReferenceKey:
    """The key of the log-probabilities of ``index``'s pairs under those weights."""
    return ReferenceKey(
        weights_sha256=weights_sha256,
        data_version=index.data_version,
        tokenizer_hash=index.tokenizer_hash,
        template=index.template,
        max_len=index.max_len,
        max_prompt_len=index.max_prompt_len,
    )


@torch.no_grad()
def score_pairs(
    model: torch.nn.Module,
    pairs: PreferencePairs,
    batch_size: int,
    device: torch.device,
    autocast: Autocast = nullcontext,
    limit: int | None = None,
) -> dict[str, np.ndarray]:
    """Summed log-probabilities and token counts of every pair's chosen and rejected reply."""
    count = len(pairs) if limit is None else min(limit, len(pairs))
    out: dict[str, list[np.ndarray]] = {k: [] for k in
                                         ("chosen_logp", "rejected_logp", "chosen_tokens",
                                          "rejected_tokens")}  # fmt: skip
    for start in range(0, count, batch_size):
        batch = pairs.batch(list(range(start, min(start + batch_size, count))))
        with autocast():
            logp, tokens = sequence_logprobs(
                model, batch["input_ids"].to(device), batch["targets"].to(device)
            )
        half = len(logp) // 2
        out["chosen_logp"].append(logp[:half].double().cpu().numpy())
        out["rejected_logp"].append(logp[half:].double().cpu().numpy())
        out["chosen_tokens"].append(tokens[:half].cpu().numpy())
        out["rejected_tokens"].append(tokens[half:].cpu().numpy())
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}


def write_reference_cache(
    model: torch.nn.Module,
    data_dir: Path,
    index: PreferenceIndex,
    key: ReferenceKey,
    out_dir: Path,
    batch_size: int,
    device: torch.device,
    autocast: Autocast = nullcontext,
    log: Callable[[str], None] = print,
) -> int:
    """Score every pair of every split with the frozen ``model``; returns the pair count."""
    tables = []
    for split in SPLITS:
        if not index.split_shards(split):
            continue
        pairs = PreferencePairs(data_dir, index, split)
        scores = score_pairs(model.eval(), pairs, batch_size, device, autocast)
        tables.append(pa.table({"id": pairs.ids, "split": [split] * len(pairs), **scores}))
        log(f"reference log-probabilities: {len(pairs)} {split} pairs")
    out_dir.mkdir(parents=True, exist_ok=True)
    table = pa.concat_tables(tables)
    pq.write_table(table, out_dir / LOGPROBS_FILE)
    write_text_atomic(out_dir / KEY_FILE, key.model_dump_json(indent=2))
    return table.num_rows


@dataclass(frozen=True)
class ReferenceValues:
    """One split's cached values, aligned with its :class:`PreferencePairs` order."""

    chosen: torch.Tensor  # float32 sums of log-probabilities
    rejected: torch.Tensor


def load_reference(
    folder: Path, expected: ReferenceKey, pairs: PreferencePairs, split: str
) -> ReferenceValues:
    """The cached values of ``pairs``, after checking the cache's key against ``expected``."""
    folder = Path(folder)
    if not (folder / KEY_FILE).is_file() or not (folder / LOGPROBS_FILE).is_file():
        raise ReferenceCacheError(
            f"no reference log-probabilities in {folder}: materialize reference_logprobs "
            "(DPO never uses the policy as its own reference)"
        )
    stored = ReferenceKey.model_validate_json((folder / KEY_FILE).read_text())
    if stored != expected:
        differs = [
            f"{name}: cached {getattr(stored, name)!r}, needed {getattr(expected, name)!r}"
            for name in ReferenceKey.model_fields
            if getattr(stored, name) != getattr(expected, name)
        ]
        raise ReferenceCacheError(
            f"the reference log-probabilities in {folder} were computed for other inputs "
            f"({'; '.join(differs)}): re-materialize reference_logprobs"
        )
    table = pq.read_table(folder / LOGPROBS_FILE)
    table = table.filter(pc.equal(table.column("split"), split))
    position = {pair_id: i for i, pair_id in enumerate(table.column("id").to_pylist())}
    missing = [pair_id for pair_id in pairs.ids if pair_id not in position]
    if missing:
        raise ReferenceCacheError(
            f"the reference cache in {folder} lacks {len(missing)} {split} pairs "
            f"(e.g. {missing[0]!r}): re-materialize reference_logprobs"
        )
    rows = np.array([position[pair_id] for pair_id in pairs.ids], dtype=np.int64)
    column = {n: table.column(n).to_numpy()[rows] for n in ("chosen_logp", "rejected_logp")}
    return ReferenceValues(
        chosen=torch.from_numpy(column["chosen_logp"]).float(),
        rejected=torch.from_numpy(column["rejected_logp"]).float(),
    )
