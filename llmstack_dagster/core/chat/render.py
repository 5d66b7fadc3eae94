"""Render a conversation to token ids and a loss mask: one renderer for every chat stage.

Our tokenizers (they carry ``SPECIAL_TOKENS``) use our template: ``<|bos|>``, then per turn
``<|role|>`` + content + ``<|end_turn|>``; a generation prompt is ``<|assistant|>``.
``OUR_CHAT_TEMPLATE`` writes the same text as Jinja, so ``apply_chat_template`` on an export
gives the same ids. Content is encoded with special tokens split as text: a user who types
``<|end_turn|>`` gets its bytes, never the special token.

Hugging Face tokenizers that bring a ``chat_template`` (SmolLM2, imported models) render through
``apply_chat_template``; the span of assistant turn k is what ``turns[:k+1]`` adds to
``turns[:k]`` plus the generation prompt. Their content may not hold a special token
(``special_token_in_content``), since the template would parse it.

The loss mask is 1 on each assistant turn's content and its end-of-turn token, 0 elsewhere.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from llmstack_dagster.core.chat.conversation import Conversation, Turn
from llmstack_dagster.core.training.tokenizer import (
    TOKENIZER_CONFIG_FILE,
    TOKENIZER_FILE,
    has_our_special_tokens,
    load_tokenizer,
    special_token_ids,
)

OUR_CHAT_TEMPLATE = (
    "{{ '<|bos|>' }}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role ' + message['role']) }}"
    "{% endif %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end_turn|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)
_PROBE = [
    Turn(role="system", content="Be brief."),
    Turn(role="user", content="Hi."),
    Turn(role="assistant", content="Hello."),
    Turn(role="user", content="Bye."),
    Turn(role="assistant", content="Goodbye."),
]


@dataclass(frozen=True)
class Rendered:
    input_ids: list[int]
    loss_mask: list[int]  # never all zeros


@dataclass(frozen=True)
class RenderError:
    """Why a conversation has no rendering: ``no_assistant_turn``, ``assistant_truncated``,
    ``empty_mask``, ``special_token_in_content`` or ``template_not_prefix`` (HF templates)."""

    reason: str
    detail: str = ""


class ChatRenderer(ABC):
    """Token ids, loss masks and generation prompts for one tokenizer."""

    def __init__(self, eos_id: int, pad_id: int, end_turn_id: int) -> None:
        if pad_id == eos_id:
            raise ValueError(f"pad id {pad_id} equals eos id: padding would hide the eos")
        self._eos_id, self._pad_id, self._end_turn_id = eos_id, pad_id, end_turn_id

    @property
    def eos_id(self) -> int:
        return self._eos_id

    @property
    def pad_id(self) -> int:
        return self._pad_id

    @property
    def end_turn_id(self) -> int:
        return self._end_turn_id

    @classmethod
    def from_tokenizer(cls, path: Path) -> ChatRenderer:
        """The renderer for ``tokenizer.json`` (or its folder): ours if it has our special
        tokens, else the ``chat_template`` of the ``tokenizer_config.json`` beside it."""
        path = Path(path)
        file = path / TOKENIZER_FILE if path.is_dir() else path
        tokenizer = load_tokenizer(file)
        if has_our_special_tokens(tokenizer):
            return OurRenderer(tokenizer)
        if not (file.parent / TOKENIZER_CONFIG_FILE).is_file():
            raise ValueError(f"{file} lacks our special tokens and has no {TOKENIZER_CONFIG_FILE}")
        return TemplateRenderer.load(file.parent)

    def render(self, conv: Conversation, max_len: int) -> Rendered | RenderError:
        """The conversation cut to ``max_len`` tokens; a cut drops the tail after the last
        trained token that still fits (so a fully cut assistant turn goes with what follows)."""
        if not any(turn.role == "assistant" for turn in conv.turns):
            return RenderError("no_assistant_turn")
        full = self._render_full(conv.turns)
        if isinstance(full, RenderError):
            return full
        ids, mask = full
        if len(ids) > max_len:
            ids, mask = ids[:max_len], mask[:max_len]
            if 1 not in mask:
                return RenderError("assistant_truncated")
            end = len(mask) - mask[::-1].index(1)
            ids, mask = ids[:end], mask[:end]
        if 1 not in mask:
            return RenderError("empty_mask")
        return Rendered(ids, mask)

    @abstractmethod
    def prompt_ids(self, turns: Sequence[Turn]) -> list[int]:
        """The rendered turns and a generation prompt: what a sampled answer continues."""

    @abstractmethod
    def _render_full(self, turns: Sequence[Turn]) -> tuple[list[int], list[int]] | RenderError:
        """Ids and loss mask of all turns, uncut."""


class OurRenderer(ChatRenderer):
    """Our template, built from token ids (content encoded with special tokens as text)."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._ids = special_token_ids(tokenizer)
        super().__init__(self._ids["eos"], self._ids["pad"], self._ids["end_turn"])
        self._text = Tokenizer.from_str(tokenizer.to_str())  # a copy: the flag is global to it
        self._text.encode_special_tokens = True

    def prompt_ids(self, turns: Sequence[Turn]) -> list[int]:
        return self._render_full(turns)[0] + [self._ids["assistant"]]

    def _render_full(self, turns: Sequence[Turn]) -> tuple[list[int], list[int]]:
        ids, mask = [self._ids["bos"]], [0]
        for turn in turns:
            content = self._text.encode(turn.content, add_special_tokens=False).ids
            trained = int(turn.role == "assistant")
            ids += [self._ids[turn.role], *content, self._ids["end_turn"]]
            mask += [0] + [trained] * (len(content) + 1)
        return ids, mask


class TemplateRenderer(ChatRenderer):
    """A Hugging Face tokenizer's own ``chat_template``, masked by rendering prefixes."""

    def __init__(self, tokenizer: Any, name: str) -> None:
        if not tokenizer.chat_template:
            raise ValueError(f"tokenizer {name} has no chat_template")
        if tokenizer.eos_token_id is None:
            raise ValueError(f"tokenizer {name} has no eos_token")
        self._tok, self._name = tokenizer, name
        decoder = tokenizer.added_tokens_decoder
        self._specials = {i: t.content for i, t in decoder.items() if t.special}
        end_turn_id = self._probe_end_turn()
        eos_id = tokenizer.eos_token_id
        super().__init__(eos_id, self._pick_pad(eos_id, end_turn_id), end_turn_id)
        if isinstance(probe := self._render_full(_PROBE), RenderError):
            raise ValueError(f"chat template of {name}: {probe.reason}")

    @classmethod
    def load(cls, folder: Path) -> TemplateRenderer:
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(folder, local_files_only=True), str(folder))

    def prompt_ids(self, turns: Sequence[Turn]) -> list[int]:
        if self._has_special(turns):
            raise ValueError(f"a turn holds a special token of {self._name}")
        return self._apply(turns, generation_prompt=True)

    def _render_full(self, turns: Sequence[Turn]) -> tuple[list[int], list[int]] | RenderError:
        if self._has_special(turns):
            return RenderError("special_token_in_content")
        ids = self._apply(turns, generation_prompt=False)
        mask = [0] * len(ids)
        for k, turn in enumerate(turns):
            if turn.role != "assistant":
                continue
            span = self._assistant_span(turns, k, ids)
            if isinstance(span, RenderError):
                return span
            mask[span[0] : span[1]] = [1] * (span[1] - span[0])
        return ids, mask

    def _assistant_span(
        self, turns: Sequence[Turn], k: int, ids: list[int]
    ) -> tuple[int, int] | RenderError:
        """[start, end) of turn k's content and end-of-turn token in the full ``ids``."""
        prompt = self._apply(turns[:k], generation_prompt=True)
        upto = self._apply(turns[: k + 1], generation_prompt=False)
        if upto[: len(prompt)] != prompt or ids[: len(upto)] != upto:
            return RenderError("template_not_prefix", f"chat template of {self._name}")
        added = upto[len(prompt) :]
        if self._end_turn_id not in added:
            return RenderError("template_not_prefix", f"no end-of-turn in {self._name}")
        return len(prompt), len(prompt) + added.index(self._end_turn_id) + 1

    def _apply(self, turns: Sequence[Turn], generation_prompt: bool) -> list[int]:
        messages = [{"role": t.role, "content": t.content} for t in turns]
        return list(
            self._tok.apply_chat_template(
                messages,
                tokenize=True,
                add_generation_prompt=generation_prompt,
                return_dict=False,
            )
        )

    def _has_special(self, turns: Sequence[Turn]) -> bool:
        return any(s in t.content for t in turns for s in self._specials.values())

    def _probe_end_turn(self) -> int:
        """The first special token the template writes after an assistant's content."""
        prompt = self._apply(_PROBE[:2], generation_prompt=True)
        upto = self._apply(_PROBE[:3], generation_prompt=False)
        special = [i for i in upto[len(prompt) :] if i in self._specials]
        if upto[: len(prompt)] != prompt or not special:
            raise ValueError(f"chat template of {self._name} has no end-of-turn token")
        return special[0]

    def _pick_pad(self, eos_id: int, end_turn_id: int) -> int:
        """The pad token if it is not eos, else the first other special token."""
        taken = {eos_id, end_turn_id, self._tok.bos_token_id}
        pad = self._tok.pad_token_id
        if pad is not None and pad not in taken:
            return pad
        for i in sorted(self._specials):
            if i not in taken:
                return i
        raise ValueError(f"tokenizer {self._name} has no special token to pad with but eos")
