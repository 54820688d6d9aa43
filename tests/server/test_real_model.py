"""``penwright serve`` on the real bundled model, through the official ``openai`` client over loopback HTTP.

One server per module (in a thread of this process, on the session's loaded model), with an API key, as an editor
would use it: chat and completions, streaming and not, ``suffix``, stop strings, seeds, usage, KV reuse between
chat turns, a client that leaves mid-answer, a full queue, and the errors.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from assistant.core.prompts import InlineRequest
from assistant.engine.completion import INLINE_SETTINGS, InlineCompleter
from assistant.server.serve import RunningServer, serve_in_thread
from assistant.server.worker import EngineModel
from tests.server.fakes import request

pytestmark = pytest.mark.slow

KEY = "test-key"
MODEL = "SmolLM2-135M-Instruct"
QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]
STORY = "The old lighthouse keeper climbed the stairs one last time. At the top, he"


@pytest.fixture(scope="module")
def server(engine: Any) -> Iterator[RunningServer]:
    with serve_in_thread(EngineModel(engine), api_key=KEY) as running:
        yield running


@pytest.fixture
def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0, timeout=120)


def wait_until_idle(server: RunningServer, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while server.worker.running or server.worker.waiting:
        assert time.monotonic() < deadline, "the server did not go idle"
        time.sleep(0.01)


def test_models_lists_the_bundled_model(client: openai.OpenAI) -> None:
    assert [model.id for model in client.models.list().data] == [MODEL]


def test_chat_whole_and_streamed_give_the_same_greedy_answer(client: openai.OpenAI, engine: Any) -> None:
    whole = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=24, temperature=0)  # type: ignore[arg-type]
    text = whole.choices[0].message.content
    assert text and text.strip()
    assert whole.choices[0].finish_reason in ("stop", "length")
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=QUESTION,  # type: ignore[arg-type]
            max_tokens=24,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert streamed == text
    assert chunks[-1].usage is not None and whole.usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_chat_usage_counts_the_chat_template_and_turn_two_reuses_the_kv_cache(
    client: openai.OpenAI, engine: Any
) -> None:
    first = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=20, temperature=0)  # type: ignore[arg-type]
    rendered = engine.tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
    expected = len(engine.tokenizer(rendered, add_special_tokens=False)["input_ids"])
    assert first.usage is not None
    assert first.usage.prompt_tokens == expected
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens
    answer = first.choices[0].message.content or ""
    history = [*QUESTION, {"role": "assistant", "content": answer}, {"role": "user", "content": "And one more?"}]
    second = client.chat.completions.create(model=MODEL, messages=history, max_tokens=10, temperature=0)  # type: ignore[arg-type]
    assert second.usage is not None and second.usage.prompt_tokens_details is not None
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached is not None and cached >= first.usage.prompt_tokens, "turn two prefilled the whole conversation"


def test_completion_usage_and_length(client: openai.OpenAI, engine: Any) -> None:
    answer = client.completions.create(model=MODEL, prompt=STORY, max_tokens=12, temperature=0)
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == len(engine.tokenizer(STORY)["input_ids"])
    assert answer.choices[0].text.strip()
    if answer.choices[0].finish_reason == "length":
        assert answer.usage.completion_tokens == 12
    streamed = client.completions.create(model=MODEL, prompt=STORY, max_tokens=12, temperature=0, stream=True)
    assert "".join(chunk.choices[0].text for chunk in streamed) == answer.choices[0].text


def test_stop_strings_cut_the_answer(client: openai.OpenAI) -> None:
    free = client.completions.create(model=MODEL, prompt=STORY, max_tokens=30, temperature=0).choices[0].text
    words = free.split()
    assert len(words) >= 4, free
    stop = " " + words[3]
    cut = client.completions.create(model=MODEL, prompt=STORY, max_tokens=30, temperature=0, stop=[stop, "@@@"])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].text == free[: free.index(stop)]
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=QUESTION,
            max_tokens=30,
            temperature=0,
            stop=["e"],
            stream=True,  # type: ignore[arg-type]
        )
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert "e" not in text and chunks[-1].choices[0].finish_reason == "stop"


def test_same_seed_same_text_at_temperature_above_zero(client: openai.OpenAI) -> None:
    def sample(seed: int) -> str:
        answer = client.completions.create(
            model=MODEL, prompt=STORY, max_tokens=20, temperature=1.0, top_p=0.95, seed=seed
        )
        return answer.choices[0].text

    first = sample(123)
    assert sample(123) == first
    assert any(sample(seed) != first for seed in (1, 2, 3)), "the seed changes nothing: is the sampler greedy?"


def test_suffix_is_the_apps_inline_suggestion(client: openai.OpenAI, engine: Any) -> None:
    prefix = "def average(numbers):\n    total = sum(numbers)\n    "
    suffix = "\n\nprint(average([1, 2, 3]))\n"
    answer = client.completions.create(model=MODEL, prompt=prefix, suffix=suffix)
    expected = InlineCompleter(engine).suggest(InlineRequest("code", prefix, suffix), settings=INLINE_SETTINGS)
    assert answer.choices[0].text == expected.text
    assert answer.usage is not None and answer.usage.prompt_tokens == expected.prompt_tokens
    streamed = client.completions.create(model=MODEL, prompt=prefix, suffix=suffix, stream=True)
    assert "".join(chunk.choices[0].text for chunk in streamed) == expected.text


def test_a_client_that_disconnects_stops_the_generation(client: openai.OpenAI, server: RunningServer) -> None:
    wait_until_idle(server)
    before = server.worker.tokens_generated
    stream = client.completions.create(model=MODEL, prompt=STORY, max_tokens=2000, temperature=0.8, stream=True)
    received = 0
    for chunk in stream:
        received += 1 if chunk.choices[0].text else 0
        if received == 5:
            break
    stream.close()
    wait_until_idle(server)
    stopped_at = server.worker.tokens_generated
    time.sleep(0.5)  # time for dozens of tokens, were it still generating
    assert server.worker.tokens_generated == stopped_at
    health = request(server.url, "GET", "/health").json()
    assert health["last_finish_reason"] == "cancelled"
    assert health["tokens_generated"] == stopped_at
    made = stopped_at - before
    assert made <= received + 8, f"{made} tokens made for a client that read {received} and left"


def test_a_full_queue_answers_429(client: openai.OpenAI, server: RunningServer) -> None:
    wait_until_idle(server)
    server.worker.max_waiting = 0  # the running request takes the only place
    try:
        stream = client.completions.create(model=MODEL, prompt=STORY, max_tokens=200, stream=True)
        next(iter(stream))
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=5)  # type: ignore[arg-type]
        assert int(caught.value.response.headers["retry-after"]) >= 1
        assert caught.value.body["code"] == "queue_full"  # type: ignore[index]
        stream.close()
        wait_until_idle(server)
    finally:
        server.worker.max_waiting = 8
    assert client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=3).choices  # type: ignore[arg-type]


def test_bad_requests(client: openai.OpenAI, server: RunningServer, engine: Any) -> None:
    long = [{"role": "user", "content": "lighthouse " * 9000}]
    with pytest.raises(openai.BadRequestError) as too_long:
        client.chat.completions.create(model=MODEL, messages=long, max_tokens=10)  # type: ignore[arg-type]
    error = too_long.value.body
    assert error["code"] == "context_length_exceeded" and error["param"] == "messages"  # type: ignore[index]
    assert "8,192" in error["message"]  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as too_much:
        client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=9000)  # type: ignore[arg-type]
    assert too_much.value.body["param"] == "max_tokens"  # type: ignore[index]
    prompt = "lighthouse " * 3000
    room = engine.context_length - len(engine.tokenizer(prompt)["input_ids"])
    with pytest.raises(openai.BadRequestError) as beyond:
        client.completions.create(model=MODEL, prompt=prompt, max_tokens=room + 1)
    assert f"{room + 1:,} in the completion" in beyond.value.body["message"]  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=QUESTION)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=QUESTION, n=2)  # type: ignore[arg-type]
    wrong = openai.OpenAI(base_url=server.url, api_key="not-the-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model=MODEL, messages=QUESTION)  # type: ignore[arg-type]
    malformed = request(server.url, "POST", "/v1/chat/completions", b"{", {"Authorization": f"Bearer {KEY}"})
    assert malformed.status == 400 and malformed.json()["error"]["code"] == "invalid_json"
    assert client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=3).choices  # type: ignore[arg-type]
