"""Penwright's remote backend against a ``penwright serve`` on the real bundled model, over loopback HTTP.

The server runs in a thread of this process on the session's loaded model, with an API key, on a free port; the
CLI runs in-process with ``--backend remote``, as a user would point it at a bigger machine. Answers are kept short.
The GUI's chat and ghost text through the same server: tests/gui/test_remote_backend.py.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assistant.cli import main
from assistant.core.prompts import InlineRequest, Prompt, StoryRequest
from assistant.core.settings import SamplerSettings
from assistant.engine.completion import INLINE_SETTINGS, InlineCompleter
from assistant.engine.generate import CancelToken
from assistant.engine.remote import RemoteChoice, open_remote_session
from assistant.server.serve import RunningServer, serve_in_thread
from assistant.server.worker import EngineModel

pytestmark = pytest.mark.slow

KEY = "sk-penwright-remote"
MODEL = "SmolLM2-135M-Instruct"
STORY = "The old lighthouse keeper climbed the stairs one last time. At the top, he"


@pytest.fixture(scope="module")
def server(engine: Any) -> Iterator[RunningServer]:
    with serve_in_thread(EngineModel(engine), api_key=KEY) as running:
        yield running


def run_cli(*arguments: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(arguments), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def wait_until_idle(server: RunningServer, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while server.worker.running or server.worker.waiting:
        assert time.monotonic() < deadline, "the server did not go idle"
        time.sleep(0.01)


def test_cli_generates_a_story_on_the_server(server: RunningServer, engine: Any) -> None:
    served_before = server.worker.requests_served
    code, out, err = run_cli(
        "generate", "--task", "story", "--prompt", STORY, "--backend", "remote", "--base-url", server.url,
        "--api-key", KEY, "--max-new-tokens", "8", "--temperature", "0", "--stats",
    )  # fmt: skip
    assert code == 0, err
    assert out.strip(), "the server's model wrote the story on"
    assert f"Connected to {server.url.split('//')[1].removesuffix('/v1')}: {MODEL}" in err
    deadline = time.monotonic() + 10
    while server.worker.requests_served == served_before and time.monotonic() < deadline:
        time.sleep(0.01)  # the worker counts a request just after its last event
    assert server.worker.requests_served == served_before + 1, "the text came from the server"
    stats_line = err.strip().splitlines()[-1]
    assert '"decoding": "remote server"' in stats_line and '"new_tokens": ' in stats_line
    local = engine.generate(Prompt(text=STORY), SamplerSettings(temperature=0, max_new_tokens=8))
    assert out.rstrip("\n") == local, "greedy over HTTP is the same text as in-process"


def test_cli_complete_on_the_server_is_the_apps_suggestion(server: RunningServer, engine: Any, tmp_path: Path) -> None:
    prefix = "def average(numbers):\n    total = sum(numbers)\n    "
    suffix = "\n\nprint(average([1, 2, 3]))\n"
    (tmp_path / "a").write_text(prefix, encoding="utf-8")
    (tmp_path / "b").write_text(suffix, encoding="utf-8")
    code, out, err = run_cli(
        "complete", "--mode", "code", "--prefix-file", str(tmp_path / "a"), "--suffix-file", str(tmp_path / "b"),
        "--base-url", server.url, "--api-key", KEY, "--stats",
    )  # fmt: skip
    assert code == 0, err
    expected = InlineCompleter(engine).suggest(InlineRequest("code", prefix, suffix), settings=INLINE_SETTINGS)
    assert out == expected.text
    assert '"route": "suffix"' in err


def test_cli_with_a_wrong_key_says_so(server: RunningServer) -> None:
    code, out, err = run_cli("generate", "--task", "poem", "--prompt", "rain", "--base-url", server.url,
                             "--api-key", "sk-not-this-one")  # fmt: skip
    assert code == 3 and out == ""
    assert f"The server at {server.url} refused the API key (401" in err
    assert "sk-not-this-one" not in err and "Traceback" not in err


def test_stop_closes_the_stream_and_the_server_stops_generating(server: RunningServer) -> None:
    wait_until_idle(server)
    session = open_remote_session(RemoteChoice(server.url, KEY))
    before = server.worker.tokens_generated
    cancel = CancelToken()
    settings = SamplerSettings(max_new_tokens=2000, temperature=0.8, repetition_penalty=1.0)
    stream = session.run(StoryRequest(STORY), settings, cancel)
    received = 0
    for _piece in stream:
        received += 1
        if received == 3:
            cancel.cancel()
    assert stream.stats.finish_reason == "cancelled"
    wait_until_idle(server)
    stopped_at = server.worker.tokens_generated
    time.sleep(0.5)  # time for dozens of tokens, were it still generating
    assert server.worker.tokens_generated == stopped_at
    assert server.worker.last_finish_reason == "cancelled"
    assert stopped_at - before <= received + 8, "the server wrote on after Stop"
    session.close()
