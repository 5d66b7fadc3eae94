"""The model backends of constitutional AI: a local checkpoint's option log-probabilities, and
the OpenAI-compatible endpoint client against a fake server on 127.0.0.1 (answers, logprobs,
a timeout, a 500, malformed bodies, and a key that never shows)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from support.checkpoints import write_checkpoint

from llmstack_dagster.core.chat.conversation import Turn
from llmstack_dagster.core.evaluation.safety_eval import load_eval_model
from llmstack_dagster.core.models.config import ModelConfig
from llmstack_dagster.core.posttraining.chat_models import (
    EndpointChatModel,
    EndpointError,
    LocalChatModel,
    ModelSpec,
    parse_model_spec,
)
from llmstack_dagster.core.training.tokenizer import load_tokenizer

KEY = "sk-test-secret-0123456789"
TOP = [{"token": "(", "logprob": -0.01, "top_logprobs": [{"token": "(", "logprob": -0.01}]},
       {"token": "B", "logprob": -0.3, "top_logprobs": [
           {"token": "B", "logprob": -0.3}, {"token": " A", "logprob": -1.5},
           {"token": "A", "logprob": -2.5}, {"token": "C", "logprob": -4.0}]}]  # fmt: skip


class FakeOpenAI(BaseHTTPRequestHandler):
    """``/<mode>/v1/chat/completions``: ok, slow, fail, notjson, nochoices, nologprobs."""

    seen: list[dict] = []

    def log_message(self, *args) -> None:  # noqa: ANN002 - quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeOpenAI.seen.append({"auth": self.headers.get("Authorization"), "body": body})
        mode = self.path.split("/")[1]
        if mode == "slow":
            time.sleep(1.0)
        if mode == "fail":
            self._send(500, b'{"error": "internal"}')
            return
        if mode == "notjson":
            self._send(200, b"<html>gateway</html>")
            return
        if mode == "nochoices":
            self._send(200, b'{"id": "x"}')
            return
        reply = f" echo {len(body['messages'])}"
        choice: dict = {"message": {"role": "assistant", "content": reply}}
        if body.get("logprobs") and mode != "nologprobs":
            choice["logprobs"] = {"content": TOP}
        self._send(200, json.dumps({"choices": [choice]}).encode())

    def _send(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def client(server: str, mode: str, timeout_s: float = 5.0) -> EndpointChatModel:
    return EndpointChatModel(f"{server}/{mode}/v1", "judge-1", "CAI_TEST_KEY", timeout_s)


def test_endpoint_answers_with_the_key_in_the_header_only(server, monkeypatch) -> None:
    monkeypatch.setenv("CAI_TEST_KEY", KEY)
    model = client(server, "ok")
    conversation = [Turn(role="user", content="hi")]
    answers = model.generate([conversation, conversation * 3], 8, seeds=[1, 2])
    assert answers == ["echo 1", "echo 3"]
    request = FakeOpenAI.seen[-1]
    assert request["auth"] == f"Bearer {KEY}"
    assert request["body"]["seed"] == 2 and request["body"]["max_tokens"] == 8
    assert KEY not in model.description and KEY not in repr(model)


def test_endpoint_option_logprobs_come_from_top_logprobs(server) -> None:
    got = client(server, "ok").option_logprobs([[Turn(role="user", content="q")]], ["(A)", "(B)"])
    assert FakeOpenAI.seen[-1]["body"]["logprobs"] is True
    # "A" and " A" are the same option: their probabilities add
    np.testing.assert_allclose(got, [[np.logaddexp(-1.5, -2.5), -0.3]])
    with pytest.raises(EndpointError, match="no option of \\['X', 'Y'\\]"):
        client(server, "ok").option_logprobs([[Turn(role="user", content="q")]], ["(X)", "(Y)"])


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("slow", "no answer within 0.3 s \\(timeout\\)"),
        ("fail", "HTTP 500: .*internal"),
        ("notjson", "malformed body, not JSON: '<html>gateway</html>'"),
        ("nochoices", "malformed body, no choices"),
        ("nologprobs", "no logprobs.content \\(does the endpoint support logprobs\\?\\)"),
    ],
)
def test_endpoint_failures_are_clear_errors_without_the_key(
    server, monkeypatch, mode: str, message: str
) -> None:
    monkeypatch.setenv("CAI_TEST_KEY", KEY)
    model = client(server, mode, timeout_s=0.3)
    with pytest.raises(EndpointError, match=message) as err:
        model.option_logprobs([[Turn(role="user", content="q")]], ["(A)", "(B)"])
    assert KEY not in str(err.value) and model.url in str(err.value)


def test_unreachable_endpoint_is_a_clear_error() -> None:
    model = EndpointChatModel("http://127.0.0.1:9/v1", "m", timeout_s=2.0)
    with pytest.raises(EndpointError, match="cannot connect"):
        model.generate([[Turn(role="user", content="q")]], 4)


def test_local_option_logprobs_equal_a_full_forward(tokenizer_file: Path, tmp_path: Path) -> None:
    vocab = load_tokenizer(tokenizer_file).get_vocab_size()
    cfg = ModelConfig(vocab_size=vocab, d_model=48, n_layers=2, n_heads=4, n_kv_heads=2,
                      ffn_hidden=96, max_seq_len=128)  # fmt: skip
    _, checkpoint = write_checkpoint(tmp_path / "ckpt", cfg)
    ev = load_eval_model(checkpoint, tokenizer_file, "chat", device="cpu")
    model = LocalChatModel(ev, "tiny", batch_size=3)
    conversations = [[Turn(role="user", content="Which is better?")],
                     [Turn(role="user", content="Pick one, please.")]]  # fmt: skip
    got = model.option_logprobs(conversations, ["(A)", "(B)"])
    assert got.shape == (2, 2)
    for i, conversation in enumerate(conversations):
        prompt = ev.prompter.prompt_ids(conversation)
        for j, option in enumerate(["(A)", "(B)"]):
            ids = ev.prompter.tokenizer.encode(option, add_special_tokens=False).ids
            full = torch.tensor([prompt + ids])
            with torch.no_grad():
                logits = ev.model(full[:, :-1])
            logp = torch.log_softmax(logits.float(), -1)[0, len(prompt) - 1 :]
            expected = sum(float(logp[k, t]) for k, t in enumerate(ids))
            assert got[i, j] == pytest.approx(expected, abs=1e-4)
    answers = model.generate(conversations, 5, temperature=1.0, seeds=[1, 2])
    assert len(answers) == 2 and answers == model.generate(conversations, 5, temperature=1.0,
                                                           seeds=[1, 2])  # fmt: skip


def test_model_specs_parse_or_say_what_is_expected() -> None:
    assert parse_model_spec("checkpoint:sl_cai") == ModelSpec(kind="checkpoint", target="sl_cai")
    assert parse_model_spec("hf:smollm2").target == "smollm2"
    spec = parse_model_spec("endpoint:http://127.0.0.1:8000/v1#judge-1")
    assert (spec.target, spec.model) == ("http://127.0.0.1:8000/v1", "judge-1")
    for bad in ("sft", "gguf:/x", "endpoint:http://host/v1", "endpoint:ftp://h#m"):
        with pytest.raises(ValueError, match="model"):
            parse_model_spec(bad)
