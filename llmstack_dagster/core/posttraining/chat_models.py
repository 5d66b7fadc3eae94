"""The models constitutional AI asks: generate, critique, revise and judge, behind one interface.

A :class:`ChatModel` answers conversations (``generate``) and scores a multiple-choice answer
(``option_logprobs``: the log-probability of each option, e.g. ``"(A)"`` and ``"(B)"``, as the
start of the assistant's reply). Two backends:

- :class:`LocalChatModel`: any model the engine loads (the pipeline's own checkpoint, or a
  Hugging Face folder or GGUF file imported by ``hf_import``), asked through its chat template
  by the one :class:`~llmstack_dagster.core.evaluation.prompting.Prompter`; an option's
  log-probability is the exact sum over its tokens (``logprobs.sequence_logprobs``).
- :class:`EndpointChatModel`: an OpenAI-compatible ``/chat/completions`` endpoint. The key is
  read from an environment variable and sent only in the ``Authorization`` header: it is never
  part of a description, a log line or an error. An option's log-probability comes from the
  ``top_logprobs`` of the first reply token that names an option (``"A"``, ``"(A"``, ...); an
  option absent from that list gets the smallest listed log-probability (an upper bound).
  Timeouts, HTTP errors and malformed bodies raise :class:`EndpointError` saying which.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import requests
import torch
from pydantic import BaseModel, Field

from llmstack_dagster.core.chat.conversation import Turn
from llmstack_dagster.core.evaluation.safety_eval import EvalModel
from llmstack_dagster.core.posttraining.logprobs import pair_rows, sequence_logprobs

Conversations = Sequence[Sequence[Turn]]


class ChatModel(Protocol):
    description: str

    def generate(
        self,
        conversations: Conversations,
        max_new_tokens: int,
        *,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seeds: Sequence[int] | None = None,
    ) -> list[str]: ...

    def option_logprobs(self, conversations: Conversations, options: Sequence[str]) -> np.ndarray:
        """(N, len(options)) log-probabilities of each option starting the reply."""
        ...


@dataclass
class LocalChatModel:
    """A model the engine loaded, asked through its chat template."""

    ev: EvalModel
    description: str
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.ev.prompter.renderer is None:
            raise ValueError(f"{self.description} has no chat template: it cannot chat")

    def generate(
        self,
        conversations: Conversations,
        max_new_tokens: int,
        *,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seeds: Sequence[int] | None = None,
    ) -> list[str]:
        answers = self.ev.prompter.answer(
            self.ev.model, list(conversations), max_new_tokens, temperature=temperature,
            top_p=top_p, seeds=seeds, batch_size=self.batch_size, autocast=self.ev.autocast,
        )  # fmt: skip
        return [a.strip() for a in answers]

    @torch.no_grad()
    def option_logprobs(self, conversations: Conversations, options: Sequence[str]) -> np.ndarray:
        prompter, renderer = self.ev.prompter, self.ev.prompter.renderer
        assert renderer is not None  # checked in __post_init__
        option_ids = [prompter.tokenizer.encode(o, add_special_tokens=False).ids for o in options]
        prompts = [prompter.prompt_ids(c) for c in conversations]
        rows = [(p, o) for p in prompts for o in option_ids]
        device = next(self.ev.model.parameters()).device
        out = []
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            inputs, targets = pair_rows([p for p, _ in chunk], [o for _, o in chunk],
                                        renderer.pad_id)  # fmt: skip
            with self.ev.autocast():
                logp, _ = sequence_logprobs(self.ev.model, inputs.to(device), targets.to(device))
            out.append(logp.double().cpu().numpy())
        flat = np.concatenate(out) if out else np.zeros(0)
        return flat.reshape(len(prompts), len(options))


class EndpointError(RuntimeError):
    """An OpenAI-compatible endpoint timed out, failed, or answered something unreadable."""


@dataclass
class EndpointChatModel:
    """An OpenAI-compatible chat-completions endpoint (``url`` is the API base, e.g.
    ``http://127.0.0.1:8000/v1``); the key comes from ``$api_key_env`` (none: no header)."""

    url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 60.0
    top_logprobs: int = 20  # the most OpenAI's API returns

    @property
    def description(self) -> str:
        return f"endpoint {self.url} model {self.model!r}"

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        endpoint = self.url.rstrip("/") + "/chat/completions"
        try:
            response = requests.post(endpoint, json=body, headers=headers, timeout=self.timeout_s)
        except requests.Timeout:
            raise EndpointError(
                f"{self.description}: no answer within {self.timeout_s:g} s (timeout)"
            ) from None
        except requests.ConnectionError as err:
            raise EndpointError(
                f"{self.description}: cannot connect ({type(err).__name__})"
            ) from None
        if response.status_code != 200:
            raise EndpointError(
                f"{self.description}: HTTP {response.status_code}: {response.text[:200]!r}"
            )
        try:
            payload = response.json()
        except ValueError:
            raise EndpointError(
                f"{self.description}: malformed body, not JSON: {response.text[:200]!r}"
            ) from None
        if not isinstance(payload, dict):
            raise EndpointError(f"{self.description}: malformed body, not a JSON object")
        return payload

    def _choice(self, payload: dict[str, Any]) -> dict[str, Any]:
        choices = payload.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise EndpointError(f"{self.description}: malformed body, no choices: {payload!r}")
        return choices[0]

    def _content(self, payload: dict[str, Any]) -> str:
        message = self._choice(payload).get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise EndpointError(f"{self.description}: malformed body, no message content")
        return content

    def _messages(self, conversation: Sequence[Turn]) -> list[dict[str, str]]:
        return [{"role": t.role, "content": t.content} for t in conversation]

    def generate(
        self,
        conversations: Conversations,
        max_new_tokens: int,
        *,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seeds: Sequence[int] | None = None,
    ) -> list[str]:
        answers = []
        for i, conversation in enumerate(conversations):
            body: dict[str, Any] = {
                "model": self.model, "messages": self._messages(conversation),
                "max_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p,
            }  # fmt: skip
            if seeds is not None:
                body["seed"] = int(seeds[i])
            answers.append(self._content(self._post(body)).strip())
        return answers

    def option_logprobs(self, conversations: Conversations, options: Sequence[str]) -> np.ndarray:
        letters = [o.strip().strip("()").strip() for o in options]
        out = np.zeros((len(conversations), len(options)))
        for i, conversation in enumerate(conversations):
            body = {"model": self.model, "messages": self._messages(conversation),
                    "max_tokens": 4, "temperature": 0.0, "logprobs": True,
                    "top_logprobs": self.top_logprobs}  # fmt: skip
            out[i] = self._option_row(self._post(body), letters)
        return out

    def _option_row(self, payload: dict[str, Any], letters: list[str]) -> np.ndarray:
        logprobs = self._choice(payload).get("logprobs")
        content = logprobs.get("content") if isinstance(logprobs, dict) else None
        if not isinstance(content, list):
            raise EndpointError(
                f"{self.description}: malformed body, no logprobs.content (does the endpoint "
                "support logprobs?)"
            )
        for position in content:
            top = position.get("top_logprobs") if isinstance(position, dict) else None
            if not isinstance(top, list):
                raise EndpointError(f"{self.description}: malformed body, no top_logprobs")
            found: dict[str, float] = {}
            for entry in top:  # "A", " A" and "(A" name the same option: add their mass
                try:
                    name, value = str(entry["token"]).strip().strip("()").strip(), entry["logprob"]
                    found[name] = float(np.logaddexp(found.get(name, -np.inf), float(value)))
                except (KeyError, TypeError, ValueError):
                    raise EndpointError(
                        f"{self.description}: malformed body, a top_logprobs entry lacks "
                        "token or logprob"
                    ) from None
            if any(letter in found for letter in letters):
                floor = min(found.values())
                return np.array([found.get(letter, floor) for letter in letters])
        raise EndpointError(f"{self.description}: the reply's top_logprobs name no option "
                            f"of {letters}")  # fmt: skip


class ModelSpec(BaseModel):
    """Which model plays a role, parsed from ``checkpoint:<stage>`` (a pipeline checkpoint,
    e.g. ``checkpoint:sft``), ``hf:<folder, .gguf file or smollm2>`` or
    ``endpoint:<API base URL>#<model name>``."""

    kind: Literal["checkpoint", "hf", "endpoint"]
    target: str = Field(min_length=1)
    model: str = ""


def parse_model_spec(text: str) -> ModelSpec:
    kind, sep, rest = text.partition(":")
    if not sep or kind not in ("checkpoint", "hf", "endpoint"):
        raise ValueError(
            f"model {text!r}: expected checkpoint:<stage>, hf:<path or smollm2> or "
            "endpoint:<url>#<model>"
        )
    if kind == "endpoint":
        url, _, model = rest.partition("#")
        if not url.startswith(("http://", "https://")) or not model:
            raise ValueError(f"model {text!r}: an endpoint is endpoint:<http(s) url>#<model>")
        return ModelSpec(kind="endpoint", target=url, model=model)
    return ModelSpec(kind=kind, target=rest)  # type: ignore[arg-type]
