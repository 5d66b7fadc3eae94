"""Supervised fine-tuning as an engine task: rendered conversations, assistant-only loss.

Data: the ``sft_dataset`` folder (``core/chat/sft_index.py``), packed into rows with
attention that never crosses conversations (``sft_data.py``). Objective: next-token loss on
the assistant tokens only, normalized by the step's global count of them
(``objectives.MaskedNextToken``). Evaluation: the held-out conversations' loss on their
assistant tokens, and greedy and sampled answers to held-out prompts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from torch import nn

from llmstack_dagster.core.chat.conversation import Turn, conversations_from_table
from llmstack_dagster.core.chat.render import ChatRenderer
from llmstack_dagster.core.chat.sft_index import SFTIndex
from llmstack_dagster.core.evaluation.prompting import Prompter
from llmstack_dagster.core.models.config import ModelConfig
from llmstack_dagster.core.training.config import TrainConfig
from llmstack_dagster.core.training.distributed import DistEnv
from llmstack_dagster.core.training.evaluation import Autocast, sample_continuations
from llmstack_dagster.core.training.hf_import import export_for_tokenizer
from llmstack_dagster.core.training.init_weights import initial_model_config
from llmstack_dagster.core.training.objectives import MaskedNextToken, Objective
from llmstack_dagster.core.training.preflight import TrainingInputError, check_sft_inputs
from llmstack_dagster.core.training.sft_data import SFTBatches, SFTConversations
from llmstack_dagster.core.training.tokenizer import load_tokenizer
from llmstack_dagster.core.training.training_task import DataSource, TrainingTask

CONVERSATIONS_DIR = "conversations"  # the text of the rendered conversations (sft_render.py)
SAMPLE_PROMPTS = 4  # held-out prompts answered at each evaluation and at the end


def sft_inputs(cfg: TrainConfig, world_size: int) -> tuple[SFTIndex, ModelConfig]:
    """The checked SFT index and the shape of the initial weights (SFT needs some)."""
    initial = initial_model_config(cfg)
    if initial is None:
        raise TrainingInputError("SFT starts from a model: set init (a checkpoint or import)")
    index = check_sft_inputs(
        Path(cfg.data_dir),
        seq_len=cfg.seq_len,
        global_batch=cfg.micro_batch_size * cfg.grad_accum_steps * world_size,
        packing=cfg.packing,
        model_vocab_size=initial.vocab_size,
    )
    return index, initial


@torch.no_grad()
def heldout_loss(
    model: nn.Module,
    conversations: SFTConversations,
    limit: int,
    device: torch.device,
    autocast: Autocast,
) -> dict[str, float]:
    """Mean loss per assistant token of the first ``limit`` held-out conversations."""
    was_training = model.training
    model.eval()
    nats = tokens = 0.0
    for conv in range(min(limit, len(conversations))):
        start, stop = conversations.offsets[conv], conversations.offsets[conv + 1]
        ids = torch.from_numpy(conversations.tokens[start:stop].astype(np.int64))
        mask = torch.from_numpy(conversations.loss_mask[start:stop])
        targets = torch.where(mask[1:], ids[1:], torch.full_like(ids[1:], -100))
        with autocast():
            loss = model(ids[None, :-1].to(device), targets[None].to(device), reduction="sum")
        nats += float(loss)
        tokens += float(mask[1:].sum())
    model.train(was_training)
    return {"val/loss": nats / tokens} if tokens else {}


def heldout_prompts(data_dir: Path, count: int) -> list[list[Turn]]:
    """The turns before the last assistant reply of the first ``count`` held-out
    conversations (read once, when the task is built)."""
    val_ids = {
        row for f in sorted((data_dir / "val").glob("*.parquet"))
        for row in pq.read_table(f, columns=["id"]).column("id").to_pylist()
    }  # fmt: skip
    prompts: list[list[Turn]] = []
    for path in sorted((data_dir / CONVERSATIONS_DIR).glob("*.parquet")):
        for conv in conversations_from_table(pq.read_table(path)):
            if conv.id in val_ids:
                last = max(i for i, t in enumerate(conv.turns) if t.role == "assistant")
                prompts.append(conv.turns[:last])
                if len(prompts) == count:
                    return prompts
    return prompts


def sft_task(cfg: TrainConfig, env: DistEnv) -> TrainingTask:
    data_dir = Path(cfg.data_dir)
    index, model_cfg = sft_inputs(cfg, env.world_size)
    train = SFTConversations(data_dir, index, "train")
    batches = SFTBatches(
        train, cfg.seq_len, cfg.micro_batch_size, cfg.grad_accum_steps, cfg.seed,
        env.rank, env.world_size, packing=cfg.packing,
    )  # fmt: skip
    val = SFTConversations(data_dir, index, "val") if index.split_shards("val") else None
    limit = cfg.eval.batches * cfg.micro_batch_size

    def evaluate(model: nn.Module, device: torch.device, autocast: Autocast) -> dict[str, float]:
        return heldout_loss(model, val, limit, device, autocast) if val is not None else {}

    return chat_model_task(
        cfg, MaskedNextToken(), batches, model_cfg, evaluate,
        data_dir / index.tokenizer_file, heldout_prompts(data_dir, SAMPLE_PROMPTS),
        {"tokenizer_hash": index.tokenizer_hash, "data_version": index.data_version},
    )  # fmt: skip


def chat_model_task(
    cfg: TrainConfig,
    objective: Objective,
    data: DataSource,
    model_cfg: ModelConfig,
    evaluate: Callable[[nn.Module, torch.device, Autocast], dict[str, float]],
    tokenizer_file: Path,
    prompts: list[list[Turn]],
    provenance: dict[str, Any],
) -> TrainingTask:
    """A task that trains a chat model (SFT, DPO): it answers the held-out ``prompts`` at
    every evaluation, is asked through its chat template and exports with it."""
    renderer = ChatRenderer.from_tokenizer(tokenizer_file)
    tokenizer = load_tokenizer(tokenizer_file)
    labelled = [(turns[-1].content, renderer.prompt_ids(turns)) for turns in prompts]

    def sample(model: nn.Module, device: torch.device) -> list[dict[str, str]]:
        return sample_continuations(
            model, tokenizer, labelled, cfg.eval, renderer.end_turn_id, cfg.seed
        )

    def export(checkpoint: Path, dest: Path) -> Path:
        return export_for_tokenizer(checkpoint, dest, tokenizer_file)

    return TrainingTask(
        objective=objective,
        data=data,
        model_config=model_cfg,
        evaluate=evaluate,
        sample=sample,
        export=export,
        prompter=Prompter(tokenizer, renderer.end_turn_id, renderer),
        provenance=provenance,
        sample_at_eval=True,
    )
