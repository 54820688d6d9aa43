"""``penwright serve`` on the command line: who may connect, the port, the key, and Ctrl-C.

The refusals come before the model loads (the model guard would fail these tests otherwise); one slow test runs
the real command in a child process, as a user would, and stops it with Ctrl-C in the middle of an answer.
"""

from __future__ import annotations

import io
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import openai
import pytest

from assistant.cli import main
from assistant.server.serve import check_exposure, continue_hint, is_loopback
from tests.conftest import REPO_ROOT


def run_serve(*arguments: str) -> tuple[int, str]:
    err = io.StringIO()
    code = main(["serve", *arguments], out=io.StringIO(), err=err)
    return code, err.getvalue()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.5", True), ("::1", True), ("localhost", True), ("0.0.0.0", False),
     ("::", False), ("192.168.1.4", False), ("example.com", False)],
)  # fmt: skip
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_non_loopback_host_without_a_key_is_refused_before_the_model_loads() -> None:
    code, err = run_serve("--host", "0.0.0.0")
    assert code == 2
    assert "Refusing to serve on 0.0.0.0 without an API key" in err
    assert "--api-key-file" in err and "Traceback" not in err
    check_exposure("0.0.0.0", "a-key")  # with a key it may


def test_an_empty_key_file_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("\n", encoding="utf-8")
    code, err = run_serve("--host", "0.0.0.0", "--api-key-file", str(key_file))
    assert code == 2 and "is empty" in err
    code, err = run_serve("--api-key-file", str(tmp_path / "missing"))
    assert code == 2 and "Cannot read the API key file" in err


def test_key_and_key_file_are_one_or_the_other(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as caught:
        run_serve("--api-key", "a", "--api-key-file", str(tmp_path / "key"))
    assert caught.value.code == 2


def test_a_port_in_use_is_said_before_the_model_loads() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = run_serve("--port", str(port))
    assert code == 2
    assert f"Cannot listen on 127.0.0.1 port {port}" in err and "--port" in err


def test_the_continue_hint_names_the_url_and_the_model() -> None:
    hint = continue_hint("http://127.0.0.1:8765/v1", "SmolLM2-135M-Instruct", keyed=True)
    assert "apiBase: http://127.0.0.1:8765/v1" in hint and "model: SmolLM2-135M-Instruct" in hint
    assert "provider: openai" in hint and "apiKey:" in hint


@pytest.mark.slow
def test_serve_answers_and_ctrl_c_stops_it_mid_answer(cli_env: dict[str, str], tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("k-123\n", encoding="utf-8")
    command = [sys.executable, "-m", "assistant", "serve", "--port", "0", "--api-key-file", str(key_file)]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()  # printed once the model is loaded and the port is open
        match = re.search(r"at (http://127\.0\.0\.1:\d+/v1)", first_line)
        assert match, first_line + (process.stderr.read() if process.poll() is not None and process.stderr else "")
        threading.Thread(target=process.stdout.read, daemon=True).start()  # the Continue hint: never block on it
        client = openai.OpenAI(base_url=match.group(1), api_key="k-123", max_retries=0, timeout=120)
        [model] = client.models.list().data
        answer = client.chat.completions.create(
            model=model.id, messages=[{"role": "user", "content": "Hello!"}], max_tokens=8
        )
        assert answer.choices[0].message.content
        stream = client.completions.create(model=model.id, prompt="Once upon a time", max_tokens=3000, stream=True)
        next(iter(stream))
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        with pytest.raises(openai.APIError):
            for _chunk in stream:
                pass  # the answer is cut off with an error event, not finished
        assert process.wait(timeout=30) == 0
        assert time.monotonic() - started < 15, "Ctrl-C waited for the answer to finish"
        assert process.stderr is not None
        assert "stopped serving" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
