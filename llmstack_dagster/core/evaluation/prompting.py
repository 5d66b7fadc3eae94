"""How a checkpoint is asked something: a chat model through its chat template (the answer ends
at the end of its turn), a base model by continuing the text (up to the end of a document).
Every stage that generates from a checkpoint (samples, toxicity tracking, ``safety_eval``)
asks through one :class:`Prompter`."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Literal

from tokenizers import Tokenizer
from torch import nn

from llmstack_dagster.core.chat.conversation import Turn
from llmstack_dagster.core.chat.render import ChatRenderer
from llmstack_dagster.core.models.generation import Autocast, generate_batch

Mode = Literal["chat", "continuation"]
CONTINUE_INSTRUCTION = "Continue this text: "


def continuation_request(text: str, mode: Mode) -> str:
    """What asks a model to continue ``text``: the text itself for a base model; for a chat
    model, the text behind :data:`CONTINUE_INSTRUCTION` as its user turn."""
    return text if mode == "continuation" else CONTINUE_INSTRUCTION + text


@dataclass(frozen=True)
class Prompter:
    tokenizer: Tokenizer
    stop_id: int  # eos for a base model, the end of the assistant turn for a chat model
    renderer: ChatRenderer | None = None  # set for chat checkpoints

    @property
    def mode(self) -> Mode:
        return "chat" if self.renderer is not None else "continuation"

    def prompt_ids(self, prompt: str | Sequence[Turn]) -> list[int]:
        """A text as one user turn (or a conversation's turns) and the assistant's cue; for a
        base model, a text as the start of a document."""
        if self.renderer is not None:
            turns = [Turn(role="user", content=prompt)] if isinstance(prompt, str) else prompt
            return self.renderer.prompt_ids(turns)
        if not isinstance(prompt, str):
            raise ValueError("a base model continues text; conversations need a chat model")
        return self.tokenizer.encode(prompt, add_special_tokens=False).ids

    def answer(
        self,
        model: nn.Module,
        texts: Sequence[str | Sequence[Turn]],
        max_new_tokens: int,
        *,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seeds: Sequence[int] | None = None,
        batch_size: int = 32,
        autocast: Autocast = nullcontext,
    ) -> list[str]:
        """The decoded answer (or continuation) to each prompt, generated in batches."""
        new = generate_batch(
            model, [self.prompt_ids(t) for t in texts], max_new_tokens, temperature=temperature,
            top_p=top_p, stop_ids={self.stop_id}, seeds=seeds, batch_size=batch_size,
            autocast=autocast,
        )  # fmt: skip
        return [self.tokenizer.decode(ids) for ids in new]
