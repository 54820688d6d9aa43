"""The remote backend over real loopback HTTP, without a model: ``penwright serve`` on the server tests' fake model,
and a small stand-in for other servers (vLLM refusing ``suffix``, llama.cpp's ``/infill``) written with the
standard library's HTTP server. The same backend on the real model: tests/server/test_remote_backend.py.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from assistant.core.errors import InputError, ModelError
from assistant.core.prompts import ChatRequest, InlineRequest, Prompt, StoryRequest, SummaryRequest
from assistant.core.settings import SamplerSettings
from assistant.engine.generate import CancelToken
from assistant.engine.remote import (
    RemoteChoice,
    RemoteClient,
    RemoteEngine,
    RemoteModelInfo,
    RemoteSession,
    list_models,
    normalize_base_url,
    open_remote_session,
    server_root,
)
from assistant.server.serve import RunningServer, serve_in_thread
from tests.server.fakes import FakeModel

KEY = "sk-remote-test-4f1c"
SHORT = SamplerSettings(max_new_tokens=5, seed=1)


# --- fixtures --------------------------------------------------------------------------------------------------


@pytest.fixture
def fake_model() -> FakeModel:
    return FakeModel(context_length=4096)


@pytest.fixture
def penwright_server(fake_model: FakeModel) -> Iterator[RunningServer]:
    with serve_in_thread(fake_model, api_key=KEY) as running:
        yield running


@pytest.fixture
def session(penwright_server: RunningServer) -> Iterator[RemoteSession]:
    remote = open_remote_session(RemoteChoice(penwright_server.url, KEY, timeout_s=30))
    yield remote
    remote.close()


@dataclass
class OtherServer:
    """Another OpenAI-compatible server: what it says it is (``owned_by``), what it writes, what it refuses."""

    owned_by: str = "vllm"
    pieces: list[str] = field(default_factory=list)
    refuse_suffix: bool = False
    llama_props: bool = False
    chat_only: bool = False
    seen: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    url: str = ""


def _handler(api: OtherServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: object) -> None:
            pass

        def _json(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            if self.path == "/v1/models":
                self._json(200, {"data": [{"id": "big-model", "owned_by": api.owned_by, "max_model_len": 32768}]})
            elif self.path == "/props" and api.llama_props:
                self._json(200, {"default_generation_settings": {"n_ctx": 8192}})
            else:
                self._json(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            api.seen.append((self.path, body))
            if self.path == "/v1/completions" and api.chat_only:
                self._json(404, {"error": {"message": "This is a chat model and not supported in v1/completions."}})
                return
            if self.path == "/v1/completions" and api.refuse_suffix and "suffix" in body:
                self._json(400, {"error": {"message": "suffix is not currently supported", "code": 400}})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for piece in api.pieces:
                if self.path == "/infill":
                    event: dict[str, Any] = {"content": piece, "stop": False}
                elif self.path == "/v1/chat/completions":
                    event = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                else:
                    event = {"choices": [{"index": 0, "text": piece, "finish_reason": None}]}
                try:
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
                except OSError:
                    return
            self.wfile.write(b"data: [DONE]\n\n")

    return Handler


@pytest.fixture
def other_server() -> Iterator[OtherServer]:
    api = OtherServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    api.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield api
    httpd.shutdown()
    httpd.server_close()
    thread.join(10)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers: a server that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    listener.close()
    for connection in accepted:
        connection.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- addresses -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [("localhost:8000", "http://localhost:8000/v1"), ("http://h:1/v1/", "http://h:1/v1"),
     ("https://api.example.com/openai/v1", "https://api.example.com/openai/v1"), (" http://h:2 ", "http://h:2/v1")],
)  # fmt: skip
def test_base_urls_are_normalized(given: str, expected: str) -> None:
    assert normalize_base_url(given) == expected


def test_bad_addresses_are_refused_with_a_sentence() -> None:
    with pytest.raises(InputError, match="Give the server's address"):
        normalize_base_url("  ")
    with pytest.raises(InputError, match="not a server address"):
        normalize_base_url("ftp://host/v1")
    assert server_root("http://h:1/v1") == "http://h:1"


# --- penwright serve (the fake model) ---------------------------------------------------------------------------


def test_connecting_lists_the_models_and_says_where_the_model_runs(
    penwright_server: RunningServer, session: RemoteSession
) -> None:
    assert list_models(penwright_server.url, KEY) == ["fake-model"]
    info = session.describe()
    assert isinstance(info, RemoteModelInfo)
    assert (info.name, info.device, info.server) == ("fake-model", "remote", "penwright")
    assert info.host == penwright_server.url.split("//")[1].removesuffix("/v1")
    assert info.context_length == 4096, "penwright serve's /health gives the context"


def test_chat_goes_to_chat_completions_with_the_history(session: RemoteSession, fake_model: FakeModel) -> None:
    history = [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "Again"},
    ]
    stream = session.run(ChatRequest(history, system_prompt="Be brief."), SHORT, CancelToken())
    assert stream.text() == "w0 w1 w2 w3 w4 "
    sent = fake_model.prompts[-1].messages
    assert sent is not None and [message["role"] for message in sent] == ["system", "user", "assistant", "user"]
    assert sent[0]["content"] == "Be brief." and sent[-1]["content"] == "Again"
    assert stream.stats.finish_reason == "length" and stream.stats.new_tokens == 5
    assert stream.stats.prompt_tokens == fake_model.count_prompt(fake_model.prompts[-1]), "usage from the server"


def test_a_story_goes_to_completions_and_stop_strings_cut_it(session: RemoteSession, fake_model: FakeModel) -> None:
    stream = session.engine.stream(Prompt(text="Once upon a time", stop=("w2",)), SHORT, CancelToken())
    assert stream.text() == "w0 w1 "
    assert stream.stats.finish_reason in ("stop", "eos")
    assert fake_model.prompts[-1].text == "Once upon a time"
    story = session.run(StoryRequest("Once upon a time"), SHORT, CancelToken()).text()
    assert story.startswith("w0 w1")


def test_a_synopsis_runs_part_by_part_on_the_server(session: RemoteSession, fake_model: FakeModel) -> None:
    document = "# One\n\nAna walked home.\n\n# Two\n\nBo sailed away."
    stages: list[str] = []
    text = session.run(
        SummaryRequest(document, form="synopsis", use_cache=False),
        SHORT,
        CancelToken(),
        lambda stage, _fraction: stages.append(stage),
    ).text()
    assert "## One" in text and "## Two" in text
    assert any("part 2 of 2" in stage for stage in stages)
    assert len(fake_model.prompts) >= 3, "each part, then the whole"


def test_stop_mid_answer_closes_the_stream_and_the_server_stops(
    session: RemoteSession, penwright_server: RunningServer, fake_model: FakeModel
) -> None:
    fake_model.seconds_per_token = 0.02
    cancel = CancelToken()
    stream = session.run(StoryRequest("Once upon a time"), SamplerSettings(max_new_tokens=2000), cancel)
    stopped_at = 0.0
    for number, _piece in enumerate(stream, 1):
        if number == 3:
            cancel.cancel()
            stopped_at = time.monotonic()
    assert time.monotonic() - stopped_at < 1.0
    assert stream.stats.finish_reason == "cancelled"
    deadline = time.monotonic() + 10
    while penwright_server.worker.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert penwright_server.worker.last_finish_reason == "cancelled"
    assert fake_model.cancelled_jobs == 1
    assert penwright_server.worker.tokens_generated < 100, "the server went on writing for nobody"


def test_a_suggestion_through_penwright_serve_uses_its_suffix_and_our_rules(
    session: RemoteSession, fake_model: FakeModel
) -> None:
    request = InlineRequest("code", "def double(x):\n    ", "\n\nprint(double(2))\n")
    seen: list[str] = []
    result = session.suggest(request, CancelToken(), seen.append)
    assert result.text == "filled in;" and seen[-1] == "filled in;"  # the fake's second line is cut (block end)
    assert result.details["route"] == "suffix"
    assert fake_model.infill_requests[-1].prefix == request.prefix
    assert fake_model.infill_requests[-1].suffix == request.suffix
    again = session.suggest(request, CancelToken())
    assert again.from_cache and again.text == result.text


def test_a_wrong_api_key_is_a_clear_sentence_without_the_key(penwright_server: RunningServer) -> None:
    with pytest.raises(ModelError) as caught:
        open_remote_session(RemoteChoice(penwright_server.url, "sk-wrong-9d2e"))
    message = str(caught.value)
    assert "refused the API key" in message and penwright_server.url in message
    assert "sk-wrong" not in message
    with pytest.raises(ModelError, match="refused the API key"):
        open_remote_session(RemoteChoice(penwright_server.url, ""))


def test_an_unknown_model_names_the_ones_there_are(penwright_server: RunningServer) -> None:
    with pytest.raises(ModelError, match="has no model 'gpt-9'; it offers: fake-model"):
        open_remote_session(RemoteChoice(penwright_server.url, KEY, model="gpt-9"))


def test_the_key_never_reaches_the_logs(penwright_server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    remote = open_remote_session(RemoteChoice(penwright_server.url, KEY))
    assert remote.run(ChatRequest([{"role": "user", "content": "Hi"}]), SHORT, CancelToken()).text()
    remote.close()
    assert caplog.records, "the HTTP libraries logged at DEBUG"
    assert KEY not in caplog.text
    assert KEY not in repr(RemoteChoice(penwright_server.url, KEY))


# --- servers that are down, slow or something else --------------------------------------------------------------


def test_a_server_that_is_down_is_named_at_once() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()
    with pytest.raises(ModelError) as caught:
        open_remote_session(RemoteChoice(url))
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert message.startswith(f"Could not connect to the server at {url}: connection refused")
    assert "Is the server running" in message


def test_a_server_that_never_answers_times_out_with_a_sentence(silent_server: str) -> None:
    engine = RemoteEngine(RemoteClient(silent_server, read_timeout=0.5), "m", 4096, "openai-compatible")
    started = time.monotonic()
    with pytest.raises(ModelError) as caught:
        engine.generate(Prompt(text="Hello"), SHORT)
    assert time.monotonic() - started < 5
    assert f"The server at {silent_server} did not answer within 0.5 s" in str(caught.value)
    assert f"POST {silent_server}/completions" in str(caught.value)


def test_stop_before_the_first_byte_ends_at_once(silent_server: str) -> None:
    engine = RemoteEngine(RemoteClient(silent_server, read_timeout=60), "m", 4096, "openai-compatible")
    cancel = CancelToken()
    stream = engine.stream(Prompt(text="Hello"), SHORT, cancel)
    timer = threading.Timer(0.3, cancel.cancel)
    timer.start()
    started = time.monotonic()
    assert stream.text() == ""
    assert time.monotonic() - started < 2, "Stop waited for the read timeout"
    assert stream.stats.finish_reason == "cancelled"
    timer.join()


def test_vllm_refuses_suffix_so_the_plain_prefix_is_used(other_server: OtherServer) -> None:
    other_server.refuse_suffix = True
    other_server.pieces = ["return", " x", " *", " 2", "\n", "\n", "def other():"]
    remote = open_remote_session(RemoteChoice(other_server.url))
    assert remote.describe().server == "vllm" and remote.describe().context_length == 32768
    request = InlineRequest("code", "def double(x):\n    ", "\n\nprint(double(2))\n")
    result = remote.suggest(request, CancelToken())
    assert result.text == "return x * 2"
    assert result.details["route"] == "prefix"
    paths = [(path, "suffix" in body) for path, body in other_server.seen]
    assert paths == [("/v1/completions", False)], "vLLM is known to refuse suffix: not even tried"
    remote.close()


def test_a_server_that_refuses_suffix_is_asked_again_without_it(other_server: OtherServer) -> None:
    other_server.owned_by = "someone"
    other_server.refuse_suffix = True
    other_server.pieces = ["return", " x", " *", " 2", "\n"]
    remote = open_remote_session(RemoteChoice(other_server.url))
    request = InlineRequest("code", "def double(x):\n    ", "\n\nprint(double(2))\n")
    assert remote.suggest(request, CancelToken()).text == "return x * 2"
    assert [("suffix" in body) for _path, body in other_server.seen] == [True, False]
    remote.suggest(InlineRequest("code", "def triple(x):\n    ", "\n\nprint(1)\n"), CancelToken())
    assert "suffix" not in other_server.seen[-1][1], "remembered"
    remote.close()


def test_llama_cpp_gets_infill(other_server: OtherServer) -> None:
    other_server.owned_by = "llamacpp"
    other_server.pieces = ["return", " x", " *", " 2", "\n", "\n", "x = 1"]
    remote = open_remote_session(RemoteChoice(other_server.url))
    request = InlineRequest("code", "def double(x):\n    ", "\n\nprint(double(2))\n")
    result = remote.suggest(request, CancelToken())
    assert result.text == "return x * 2" and result.details["route"] == "infill"
    path, body = other_server.seen[-1]
    assert path == "/infill" and body["input_prefix"] == request.prefix and body["input_suffix"] == request.suffix
    prose = remote.suggest(InlineRequest("prose", "The night was ", ""), CancelToken())
    assert other_server.seen[-1][0] == "/v1/completions" and other_server.seen[-1][1]["prompt"] == "The night was"
    assert prose.details["route"] == "prefix"
    remote.close()


def test_chat_on_another_server_streams_the_deltas(other_server: OtherServer) -> None:
    other_server.owned_by = "someone"
    other_server.pieces = ["Hello", " there", "."]
    remote = open_remote_session(RemoteChoice(other_server.url, model="big-model"))
    stream = remote.run(ChatRequest([{"role": "user", "content": "Hi"}]), SHORT, CancelToken())
    assert stream.text() == "Hello there."
    path, body = other_server.seen[-1]
    assert path == "/v1/chat/completions" and body["model"] == "big-model" and body["stream"] is True
    assert body["max_tokens"] == 5 and body["seed"] == 1 and "top_k" not in body
    assert stream.stats.new_tokens == 3, "no usage from this server: one token a chunk"
    remote.close()


def test_a_chat_only_server_says_why_a_story_cannot_run(other_server: OtherServer) -> None:
    other_server.owned_by = "openai"
    other_server.chat_only = True
    remote = open_remote_session(RemoteChoice(other_server.url))
    with pytest.raises(ModelError) as caught:
        remote.run(StoryRequest("Once upon a time"), SHORT, CancelToken()).text()
    message = str(caught.value)
    assert f"The server at {other_server.url} does not continue plain text" in message
    assert "This is a chat model" in message
    remote.close()
