"""The command line's remote backend over loopback HTTP against ``penwright serve`` on the fake model (no model
loads here); the same on the real model: tests/server/test_remote_backend.py."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.cli import main
from assistant.core import api_keys
from assistant.core.api_keys import KeyStore
from assistant.core.settings import AppSettings, save_settings
from assistant.server.serve import RunningServer, serve_in_thread
from tests.server.fakes import FakeModel

KEY = "sk-cli-remote"


@pytest.fixture(autouse=True)
def session_key_store(monkeypatch: pytest.MonkeyPatch) -> KeyStore:
    store = KeyStore(None)
    monkeypatch.setattr(api_keys, "_DEFAULT", store)
    monkeypatch.delenv(api_keys.ENV_VARIABLE, raising=False)
    return store


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with serve_in_thread(FakeModel(context_length=4096), api_key=KEY) as running:
        yield running


def run(*arguments: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(arguments), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_generate_chat_on_the_server(server: RunningServer) -> None:
    code, out, err = run("generate", "--task", "chat", "--prompt", "Hi", "--base-url", server.url, "--api-key", KEY,
                         "--max-new-tokens", "3")  # fmt: skip
    assert (code, out) == (0, "w0 w1 w2 \n"), err


def test_the_key_from_the_environment_or_the_keyring(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, session_key_store: KeyStore
) -> None:
    session_key_store.set(server.url, KEY)  # as the app keeps it
    assert (
        run("generate", "--task", "poem", "--prompt", "rain", "--base-url", server.url, "--max-new-tokens", "2")[0] == 0
    )
    session_key_store.set(server.url, "")
    monkeypatch.setenv(api_keys.ENV_VARIABLE, KEY)
    assert run("models", "--base-url", server.url) == (0, f"remote      fake-model  {server.url}\n", "")


def test_backend_remote_uses_the_apps_settings(server: RunningServer, session_key_store: KeyStore) -> None:
    save_settings(AppSettings(backend="remote", remote_base_url=server.url, remote_model="fake-model"))
    session_key_store.set(server.url, KEY)
    code, out, err = run("generate", "--task", "story", "--prompt", "Once", "--backend", "remote",
                         "--max-new-tokens", "2")  # fmt: skip
    assert (code, out) == (0, "w0 w1 \n"), err
    code, out, err = run("generate", "--task", "story", "--prompt", "Once", "--max-new-tokens", "2", "--backend",
                         "remote", "--remote-model", "other")  # fmt: skip
    assert code == 3 and "has no model 'other'; it offers: fake-model" in err


def test_complete_on_the_server(server: RunningServer, tmp_path: Path) -> None:
    (tmp_path / "a").write_text("def double(x):\n    ", encoding="utf-8")
    code, out, err = run("complete", "--mode", "code", "--prefix-file", str(tmp_path / "a"), "--base-url",
                         server.url, "--api-key", KEY)  # fmt: skip
    assert (code, out) == (0, "filled in;"), err


def test_usage_mistakes_are_exit_code_2() -> None:
    code, _out, err = run("generate", "--task", "story", "--prompt", "Once", "--backend", "remote")
    assert code == 2 and "--backend remote needs the server's address" in err
    code, _out, err = run("generate", "--task", "story", "--prompt", "Once", "--base-url", "http://h:1/v1",
                          "--model", "x.gguf")  # fmt: skip
    assert code == 2 and "--remote-model" in err
    code, _out, err = run("generate", "--task", "story", "--prompt", "Once", "--base-url", "ftp://h/v1")
    assert code == 2 and "not a server address" in err


def test_a_server_that_is_down_is_exit_code_3_with_the_url() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    code, out, err = run("chat", "--base-url", url)
    assert code == 3 and out == ""
    assert f"penwright: Could not connect to the server at {url}: connection refused" in err
    assert "Traceback" not in err
