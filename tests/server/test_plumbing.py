"""The server's plumbing on a fake model, over real loopback HTTP: shapes, errors, auth, CORS, the queue, cancel.

Cheap (no model); each feature also has a test on the real model in test_real_model.py.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import openai
import pytest

from assistant.server.serve import RunningServer, serve_in_thread
from tests.server.fakes import FakeModel, request, sse_events

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
HELLO = {"model": "fake-model", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 3}


@contextmanager
def fake_server(model: FakeModel | None = None, **options: Any) -> Iterator[tuple[RunningServer, FakeModel]]:
    model = model or FakeModel()
    with serve_in_thread(model, **options) as server:
        yield server, model


def client(server: RunningServer, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key=key, max_retries=0, timeout=30)


def wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def assert_openai_error(reply: Any, status: int, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    assert reply.status == status, reply.body
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    return error


# --- shapes ----------------------------------------------------------------------------------------------------


def test_models_and_health() -> None:
    with fake_server() as (server, _model):
        models = client(server).models.list()
        assert [model.id for model in models.data] == ["fake-model"]
        assert client(server).models.retrieve("fake-model").id == "fake-model"
        health = request(server.url, "GET", "/health").json()
        assert health["status"] == "ok" and health["model"] == "fake-model"
        assert health["tokens_generated"] == 0 and not health["running"]


def test_chat_whole_answer_with_usage() -> None:
    with fake_server() as (server, model):
        answer = client(server).chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "hello there"}], max_tokens=3
        )
        assert answer.object == "chat.completion"
        assert answer.choices[0].message.content == "w0 w1 w2 "
        assert answer.choices[0].finish_reason == "length"
        assert answer.usage is not None
        assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (4, 3, 7)
        assert model.prompts[-1].messages == ({"role": "user", "content": "hello there"},)


def test_chat_stream_chunks_end_with_usage_and_done() -> None:
    with fake_server() as (server, _model):
        reply = request(server.url, "POST", CHAT, {**HELLO, "stream": True, "stream_options": {"include_usage": True}})
        assert reply.status == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        events = sse_events(reply.body)
        assert events[-1] == "[DONE]"
        chunks = [json.loads(event) for event in events[:-1]]
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks[:-1])
        assert text == "w0 w1 w2 "
        assert chunks[-2]["choices"][0]["finish_reason"] == "length"
        assert all(chunk["usage"] is None for chunk in chunks[:-1])
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3
        assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}


def test_stream_without_include_usage_has_no_usage() -> None:
    with fake_server() as (server, _model):
        chunks = list(client(server).chat.completions.create(**HELLO, stream=True))  # type: ignore[call-overload]
        assert all(chunk.usage is None for chunk in chunks)
        assert chunks[-1].choices[0].finish_reason == "length"


def test_sampler_fields_reach_the_engine_and_omitted_ones_keep_penwrights_defaults() -> None:
    with fake_server() as (server, model):
        client(server).chat.completions.create(
            model="fake-model",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=2,
            temperature=0.3,
            top_p=0.5,
            seed=7,
            extra_body={"top_k": 5, "repetition_penalty": 1.3},
        )
        settings = model.settings_seen[-1]
        assert (settings.temperature, settings.top_p, settings.seed, settings.top_k) == (0.3, 0.5, 7, 5)
        assert (settings.repetition_penalty, settings.max_new_tokens, settings.min_p) == (1.3, 2, 0.05)


def test_completion_stop_strings_and_default_length() -> None:
    with fake_server() as (server, _model):
        answer = client(server).completions.create(model="fake-model", prompt="once upon", stop=["w2"])
        assert answer.choices[0].text == "w0 w1 "
        assert answer.choices[0].finish_reason == "stop"
        whole = client(server).completions.create(model="fake-model", prompt="once upon", max_tokens=None)
        assert whole.usage is not None and whole.usage.completion_tokens == 16  # OpenAI's default max_tokens


def test_suffix_goes_through_the_inline_completer() -> None:
    with fake_server() as (server, model):
        answer = client(server).completions.create(
            model="fake-model", prompt="def f():\n    ", suffix="\nprint(f())", stop=["\n"]
        )
        assert answer.choices[0].text == "filled in;"
        assert answer.choices[0].finish_reason == "stop"
        (infill,) = model.infill_requests
        assert (infill.mode, infill.prefix, infill.suffix) == ("code", "def f():\n    ", "\nprint(f())")
        settings = model.settings_seen[-1]
        assert (settings.temperature, settings.max_new_tokens) == (0.0, 48)  # the app's inline defaults


def test_a_fim_prompt_written_as_text_is_answered_as_a_suffix_request() -> None:
    """Continue's default template for unknown models: the sentinels as text, no ``suffix`` field."""
    with fake_server() as (server, model):
        client(server).completions.create(
            model="fake-model",
            prompt="<fim_prefix>x = <fim_suffix>\ny = 2<fim_middle>",
            extra_body={"mode": "prose"},
        )
        (infill,) = model.infill_requests
        assert (infill.mode, infill.prefix, infill.suffix) == ("prose", "x = ", "\ny = 2")


def test_stream_of_a_suffix_request() -> None:
    with fake_server() as (server, _model):
        chunks = list(
            client(server).completions.create(model="fake-model", prompt="a", suffix="b", stream=True, max_tokens=10)
        )
        assert "".join(chunk.choices[0].text for chunk in chunks) == "filled in;\nsecond line"
        assert chunks[-1].choices[0].finish_reason == "stop"


# --- errors ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (b"{not json", None, "invalid_json"),
        (b"[1, 2]", None, "invalid_json"),
        (b"", None, "invalid_json"),
        ({"model": "fake-model"}, "messages", "missing_required_parameter"),
        ({**HELLO, "messages": []}, "messages", None),
        ({**HELLO, "temperature": 5}, "temperature", "invalid_value"),
        ({**HELLO, "max_tokens": 0}, "max_tokens", "invalid_value"),
        ({**HELLO, "n": 2}, "n", None),
        ({**HELLO, "max_tokens": 65}, "max_tokens", "invalid_value"),
        ({**HELLO, "tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", None),
        ({**HELLO, "messages": [{"role": "tool", "content": "x"}]}, "messages[0].role", None),
        (
            {**HELLO, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            "messages[0].content[0]",
            None,
        ),
    ],
)
def test_bad_chat_requests_get_400_in_openais_shape(body: Any, param: str | None, code: str | None) -> None:
    with fake_server() as (server, model):
        reply = request(server.url, "POST", CHAT, body)
        error = assert_openai_error(reply, 400, param, code)
        assert error["type"] == "invalid_request_error"
        assert not model.prompts, "a refused request reached the model"


def test_max_tokens_beyond_the_context_is_400_through_the_openai_client() -> None:
    with fake_server() as (server, _model), pytest.raises(openai.BadRequestError) as caught:
        client(server).chat.completions.create(**{**HELLO, "max_tokens": 1000})  # type: ignore[call-overload]
    assert "1,000" in str(caught.value) and "64" in str(caught.value)


def test_unknown_model_is_404() -> None:
    with fake_server() as (server, _model):
        reply = request(server.url, "POST", CHAT, {**HELLO, "model": "gpt-4"})
        error = assert_openai_error(reply, 404, "model", "model_not_found")
        assert "gpt-4" in error["message"] and "fake-model" in error["message"]
        with pytest.raises(openai.NotFoundError):
            client(server).models.retrieve("gpt-4")


@pytest.mark.parametrize("stream", [False, True])
def test_prompt_longer_than_the_context_is_400_with_the_numbers(stream: bool) -> None:
    long = {"role": "user", "content": "word " * 70}
    with fake_server() as (server, model):
        reply = request(server.url, "POST", CHAT, {**HELLO, "messages": [long], "max_tokens": None, "stream": stream})
        error = assert_openai_error(reply, 400, "messages", "context_length_exceeded")
        assert "64" in error["message"] and "72" in error["message"]
        assert not model.prompts


def test_prompt_plus_max_tokens_beyond_the_context_is_400_with_the_numbers() -> None:
    with fake_server() as (server, _model):
        reply = request(server.url, "POST", COMPLETIONS, {"model": "fake-model", "prompt": "a " * 40, "max_tokens": 30})
        error = assert_openai_error(reply, 400, "max_tokens", "context_length_exceeded")
        assert "70" in error["message"] and "40 in the prompt" in error["message"] and "30 in the" in error["message"]


def test_an_empty_prompt_is_400_before_any_text() -> None:
    with fake_server() as (server, model):
        reply = request(server.url, "POST", COMPLETIONS, {"model": "fake-model", "prompt": "", "stream": True})
        assert "empty" in assert_openai_error(reply, 400, "prompt")["message"]
        assert not model.prompts


def test_unknown_url_and_method_get_openai_errors() -> None:
    with fake_server() as (server, _model):
        assert_openai_error(request(server.url, "GET", "/v1/embeddings"), 404)
        assert_openai_error(request(server.url, "GET", CHAT), 405)


def test_oversized_body_is_413_before_it_is_read() -> None:
    with fake_server() as (server, _model):
        reply = request(server.url, "POST", CHAT, b"x", headers={"Content-Length": str(17 * 2**20)})
        assert_openai_error(reply, 413)


# --- the API key -----------------------------------------------------------------------------------------------


def test_api_key_is_required_on_v1_but_not_on_health() -> None:
    with fake_server(api_key="s3cret") as (server, model):
        assert_openai_error(request(server.url, "GET", "/v1/models"), 401, code="missing_api_key")
        wrong = request(server.url, "POST", CHAT, HELLO, headers={"Authorization": "Bearer nope"})
        error = assert_openai_error(wrong, 401, code="invalid_api_key")
        assert "nope" not in error["message"]
        with pytest.raises(openai.AuthenticationError):
            client(server, key="wrong").chat.completions.create(**HELLO)  # type: ignore[call-overload]
        assert client(server, key="s3cret").chat.completions.create(**HELLO).choices  # type: ignore[call-overload]
        assert request(server.url, "GET", "/health").status == 200
        assert len(model.prompts) == 1


# --- CORS ------------------------------------------------------------------------------------------------------


def test_cors_is_off_unless_asked() -> None:
    origin = {"Origin": "http://example.com"}
    with fake_server() as (server, _model):
        reply = request(server.url, "GET", "/v1/models", headers=origin)
        assert "access-control-allow-origin" not in reply.headers
    with fake_server(cors_origins=["http://example.com"], api_key="k") as (server, _model):
        preflight = request(
            server.url,
            "OPTIONS",
            CHAT,
            headers={
                **origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status == 200
        assert preflight.headers["access-control-allow-origin"] == "http://example.com"
        denied = request(server.url, "GET", "/v1/models", headers=origin)
        assert denied.status == 401 and denied.headers["access-control-allow-origin"] == "http://example.com"
        other = request(server.url, "GET", "/v1/models", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers


# --- one at a time: the queue, 429, and cancel -----------------------------------------------------------------


def test_a_full_queue_answers_429_with_retry_after() -> None:
    model = FakeModel()
    model.hold.set()
    with fake_server(model, max_waiting=1) as (server, _model):
        first = client(server).chat.completions.create(**{**HELLO, "max_tokens": 5}, stream=True)  # type: ignore[call-overload]
        chunks = iter(first)
        next(chunks)  # the role chunk: the first request runs (held between tokens)
        queued = send_without_reading(server, {**HELLO, "stream": True})
        wait_until(lambda: server.worker.waiting == 1)
        busy = request(server.url, "POST", CHAT, HELLO)
        error = assert_openai_error(busy, 429, code="queue_full")
        assert int(busy.headers["retry-after"]) >= 1
        assert "busy" in error["message"]
        with pytest.raises(openai.RateLimitError):
            client(server).chat.completions.create(**HELLO)  # type: ignore[call-overload]
        model.release.set()
        assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "w0 w1 w2 w3 w4 "
        response = queued.getresponse()
        assert response.status == 200 and sse_events(response.read())[-1] == "[DONE]"
        queued.close()
        assert request(server.url, "POST", CHAT, HELLO).status == 200


def send_without_reading(server: RunningServer, body: dict[str, Any]) -> http.client.HTTPConnection:
    """A request sent and left unanswered on its connection (it waits in the server's queue)."""
    parts = urlsplit(server.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    connection.request("POST", CHAT, body=json.dumps(body), headers={"Content-Type": "application/json"})
    return connection


def test_a_client_that_disconnects_stops_its_generation() -> None:
    model = FakeModel(seconds_per_token=0.05)
    model.hold.set()
    with fake_server(model) as (server, _model):
        stream = client(server).chat.completions.create(**{**HELLO, "max_tokens": 60}, stream=True)  # type: ignore[call-overload]
        chunks = iter(stream)
        next(chunks)
        model.release.set()
        for _ in range(3):
            next(chunks)
        stream.close()  # the editor moved on
        wait_until(lambda: not server.worker.running)
        stopped_at = server.worker.tokens_generated
        assert model.cancelled_jobs == 1
        assert stopped_at <= 3 + 2, f"{stopped_at} tokens made for a client that read 3 and left"
        assert request(server.url, "GET", "/health").json()["tokens_generated"] == stopped_at


def test_a_waiting_request_whose_client_left_never_runs() -> None:
    model = FakeModel()
    model.hold.set()
    with fake_server(model) as (server, _model):
        running = client(server).chat.completions.create(**HELLO, stream=True)  # type: ignore[call-overload]
        next(iter(running))
        waiting = send_without_reading(server, {**HELLO, "stream": True})
        wait_until(lambda: server.worker.waiting == 1)
        waiting.close()
        time.sleep(0.2)  # let the server notice the closed connection
        model.release.set()
        list(running)
        wait_until(lambda: not server.worker.running and server.worker.waiting == 0)
        assert len(model.prompts) == 1, "the abandoned request still ran"


def test_stopping_the_server_ends_open_streams() -> None:
    model = FakeModel()
    model.hold.set()
    with fake_server(model) as (server, _model):
        stream = client(server).chat.completions.create(**{**HELLO, "max_tokens": 60}, stream=True)  # type: ignore[call-overload]
        chunks = iter(stream)
        next(chunks)
        server.worker.cancel_all()
        with pytest.raises(openai.APIError):
            list(chunks)
        assert_openai_error(request(server.url, "POST", CHAT, HELLO), 503)
