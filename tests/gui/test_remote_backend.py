"""The app on a remote server: Settings, the worker, the status bar, chat and ghost text over loopback HTTP.

The plumbing runs against ``penwright serve`` on the server tests' fake model (fast); the chat and a ghost-text
suggestion run against ``penwright serve`` on the real bundled model, started by the test on a free port.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any, cast

import pytest

from assistant.core import api_keys
from assistant.core.api_keys import KeyStore
from assistant.core.prompts import StoryRequest
from assistant.core.settings import AppSettings, SamplerSettings
from assistant.engine.remote import RemoteChoice, RemoteModelInfo
from assistant.engine.session import ModelChoice
from assistant.gui.panes.chat import ChatPane
from assistant.gui.panes.editor import EditorPane
from assistant.gui.worker import AiClient, default_session_factory
from assistant.server.serve import RunningServer, serve_in_thread
from assistant.server.worker import EngineModel
from tests.gui.test_chat_pane import type_and_press_enter
from tests.gui.test_documents import ScriptedPrompter
from tests.gui.test_ghost_text import _focus, _wait_for_real_suggestion_and_accept_it, type_text
from tests.server.fakes import FakeModel

KEY = "sk-gui-remote"


@pytest.fixture(autouse=True)
def session_key_store(monkeypatch: pytest.MonkeyPatch) -> KeyStore:
    """The app's key store without the system keyring: tests never write to a real one."""
    store = KeyStore(None)
    monkeypatch.setattr(api_keys, "_DEFAULT", store)
    monkeypatch.delenv(api_keys.ENV_VARIABLE, raising=False)
    return store


@pytest.fixture
def fake_server() -> Iterator[RunningServer]:
    with serve_in_thread(FakeModel(context_length=4096), api_key=KEY) as running:
        yield running


def host(server: RunningServer) -> str:
    return server.url.split("//")[1].removesuffix("/v1")


def remote_settings(server_url: str) -> AppSettings:
    settings = AppSettings(backend="remote", remote_base_url=server_url, remote_timeout_s=60)
    settings.sampler = SamplerSettings(max_new_tokens=16, seed=1)
    return settings


def free_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/v1"


# --- Settings ----------------------------------------------------------------------------------------------------


def test_settings_fetch_the_servers_models_and_keep_the_key_out_of_the_file(
    qtbot, fake_server: RunningServer, session_key_store: KeyStore
) -> None:
    from assistant.gui.dialogs.settings import SettingsDialog

    dialog = SettingsDialog(AppSettings(), key_store=session_key_store)
    qtbot.addWidget(dialog)
    assert not dialog.base_url.isEnabled() and dialog.model_box.isEnabled()
    dialog.backend.setCurrentIndex(dialog.backend.findData("remote"))
    assert dialog.base_url.isEnabled() and not dialog.model_box.isEnabled()
    dialog.base_url.setText(fake_server.url)
    dialog.start_model_fetch()  # no key yet: the server says no
    qtbot.waitUntil(lambda: "refused the API key" in dialog.remote_status.text(), timeout=10000)
    dialog.api_key.setText(KEY)
    dialog.start_model_fetch()
    qtbot.waitUntil(lambda: dialog.remote_model.count() == 1, timeout=10000)
    assert dialog.remote_model.currentText() == "fake-model"
    assert dialog.remote_status.text() == "The server offers 1 model."
    assert "kept only until Penwright closes" in dialog.key_note.text(), "no keyring here, and the dialog says so"
    chosen = dialog.result_settings()
    assert (chosen.backend, chosen.remote_base_url, chosen.remote_model) == ("remote", fake_server.url, "fake-model")
    assert KEY not in str(chosen.to_dict())
    assert dialog.api_key_entered() == KEY


def test_the_window_connects_to_the_server_and_says_where_the_model_runs(
    qtbot, fake_server: RunningServer, session_key_store: KeyStore
) -> None:
    from assistant.gui.main_window import MainWindow

    client = AiClient()  # the app's own factory: a RemoteChoice connects, a ModelChoice would load a model
    window = MainWindow(client, AppSettings(), prompter_factory=lambda _parent: cast(Any, ScriptedPrompter()))
    qtbot.addWidget(window)
    try:
        with qtbot.waitSignal(client.modelLoaded, timeout=15000) as loaded:
            window.change_settings(remote_settings(fake_server.url), api_key=KEY)
        info = loaded.args[0]
        assert isinstance(info, RemoteModelInfo) and info.name == "fake-model"
        assert window.status_model.text() == f"remote: fake-model at {host(fake_server)}"
        assert session_key_store.get(fake_server.url) == KEY, "the key went to the key store"
        choice = window.model_choice()
        assert isinstance(choice, RemoteChoice) and choice.api_key == KEY
        from assistant.core.settings import load_settings

        assert KEY not in str(load_settings().to_dict())
    finally:
        window._closing_confirmed = True
        window.close()
        client.shutdown()


@pytest.fixture
def local_then_remote(qtbot, fake_session) -> Iterator[AiClient]:
    """A client whose local model is the fake and whose remote choices really connect."""

    def factory(choice: Any, progress: Any) -> Any:
        return default_session_factory(choice, progress) if isinstance(choice, RemoteChoice) else fake_session

    client = AiClient(factory)
    with qtbot.waitSignal(client.modelLoaded, timeout=5000):
        client.load(ModelChoice())
    yield client
    client.shutdown()


def test_a_server_that_is_down_leaves_no_model_not_the_local_one(qtbot, local_then_remote: AiClient) -> None:
    from assistant.gui.main_window import MainWindow

    fake_client = local_then_remote
    prompter = ScriptedPrompter()
    url = free_url()
    window = MainWindow(fake_client, remote_settings(url), prompter_factory=lambda _parent: cast(Any, prompter))
    qtbot.addWidget(window)
    assert fake_client.model_info is not None, "the fake (local) model was loaded first"
    with qtbot.waitSignal(fake_client.loadFailed, timeout=15000) as failed:
        fake_client.load(window.model_choice())
    message = failed.args[0]
    assert message.startswith(f"Could not connect to the server at {url}: connection refused")
    assert fake_client.model_info is None and fake_client.state == "error"
    assert window.status_model.text() == f"remote: not connected to {url.split('//')[1].removesuffix('/v1')}"
    assert prompter.warnings and "Choose another model in Settings" in prompter.warnings[-1]
    failures: list[str] = []
    job = fake_client.start(StoryRequest("Once"), SamplerSettings(max_new_tokens=4))
    job.failed.connect(failures.append)
    qtbot.waitUntil(lambda: bool(failures), timeout=5000)
    assert "Could not connect" in failures[0], "no silent answer from the local model"
    with qtbot.waitSignal(fake_client.modelLoaded, timeout=5000):
        fake_client.load(ModelChoice())  # back to the local model when asked
    window._closing_confirmed = True
    window.close()


# --- the real model behind penwright serve ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_server(engine: Any) -> Iterator[RunningServer]:
    with serve_in_thread(EngineModel(engine), api_key=KEY) as running:
        yield running


@pytest.fixture
def remote_client(qtbot, real_server: RunningServer) -> Iterator[AiClient]:
    client = AiClient()
    with qtbot.waitSignal(client.modelLoaded, timeout=30000):
        client.load(RemoteChoice(real_server.url, KEY, timeout_s=120))
    yield client
    client.shutdown()
    assert not client._thread.isRunning()


@pytest.mark.slow
def test_chat_through_the_server(qtbot, remote_client: AiClient, real_server: RunningServer, chat_history) -> None:
    served = real_server.worker.requests_served
    settings = remote_settings(real_server.url)
    pane = ChatPane(remote_client, settings, chat_history)
    qtbot.addWidget(pane)
    pane.show()
    try:
        with qtbot.waitSignal(pane.answerFinished, timeout=120000) as finished:
            type_and_press_enter(qtbot, pane, "Say hello in one short sentence.")
        answer = finished.args[0]
        assert answer.strip(), "the server's model answered"
        qtbot.waitUntil(lambda: real_server.worker.requests_served > served, timeout=10000)
        assert chat_history.load(pane.conversation_id).messages[-1] == {"role": "assistant", "content": answer}
    finally:
        pane.close()


@pytest.mark.slow
def test_a_ghost_text_suggestion_through_the_server(qtbot, remote_client: AiClient, real_server: RunningServer) -> None:
    served = real_server.worker.requests_served
    pane = EditorPane(remote_client, remote_settings(real_server.url))
    qtbot.addWidget(pane)
    _focus(qtbot, pane)
    typed = "Once upon a time, there was a"
    type_text(qtbot, pane.editor, typed)
    suggestion = _wait_for_real_suggestion_and_accept_it(qtbot, pane, typed)
    assert suggestion.strip()
    assert real_server.worker.requests_served > served, "the suggestion came from the server"
    pane.close()


@pytest.fixture
def chat_history() -> Iterator[Any]:
    from assistant.core.history import ChatHistory, default_history_path

    history = ChatHistory(default_history_path())
    yield history
    history.close()
