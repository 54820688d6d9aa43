"""GUI fixtures: an AiClient on a fake session for fast plumbing tests, and one on the real bundled model."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from assistant.core.settings import AppSettings, SamplerSettings
from assistant.engine.generate import CancelToken, GenerationStats, TextStream
from assistant.engine.session import EngineSession, ModelChoice, ModelInfo


@dataclass
class FakeSession:
    """Writes ``words`` one by one with a short pause, like a model would, and honours the cancel token.

    ``requests`` records every request the worker ran, so tests can check what a pane asked for.
    """

    words: list[str] = field(default_factory=lambda: [f"word{index} " for index in range(20)])
    delay: float = 0.005
    fail_with: Exception | None = None
    requests: list[object] = field(default_factory=list)
    threads: set[int] = field(default_factory=set)

    def describe(self) -> ModelInfo:
        return ModelInfo(name="Fake model", device="cpu", dtype="float32", context_length=2048, load_seconds=0.0)

    suggestions: dict[str, str] = field(default_factory=dict)
    """Inline suggestions by the prefix's last characters; the default suggestion is " and more"."""

    def suggest(self, request, cancel: CancelToken, on_text=None):
        from assistant.engine.completion import InlineResult

        self.requests.append(request)
        self.threads.add(threading.get_ident())
        if self.fail_with is not None:
            raise self.fail_with
        text = next((value for key, value in self.suggestions.items() if request.prefix.endswith(key)), " and more")
        shown = ""
        for char in text:
            if cancel.cancelled:
                return InlineResult(shown, cancelled=True)
            time.sleep(self.delay / 5)
            shown += char
            if on_text is not None and shown.strip():
                on_text(shown)
        return InlineResult(text, new_tokens=len(text))

    def run(self, request, settings: SamplerSettings, cancel: CancelToken, progress=None) -> TextStream:
        self.requests.append(request)
        self.threads.add(threading.get_ident())
        stats = GenerationStats(prompt_tokens=10)
        if self.fail_with is not None:
            raise self.fail_with

        def pieces() -> Iterator[str]:
            stats.finish_reason = "length"
            for word in self.words[: settings.max_new_tokens]:
                if cancel.cancelled:
                    stats.finish_reason = "cancelled"
                    return
                time.sleep(self.delay)
                stats.new_tokens += 1
                yield word
            stats.tok_s = 1 / self.delay if self.delay else 1000.0

        return TextStream(pieces(), stats)


@pytest.fixture
def fake_session() -> FakeSession:
    return FakeSession()


@pytest.fixture
def fake_client(qtbot, fake_session: FakeSession):
    """An AiClient whose worker thread runs the fake session; shut down (thread joined) after the test."""
    from assistant.gui.worker import AiClient

    client = AiClient(lambda _choice, _progress: fake_session)
    with qtbot.waitSignal(client.modelLoaded, timeout=5000):
        client.load(ModelChoice())
    yield client
    client.shutdown()
    assert not client._thread.isRunning()


@pytest.fixture
def real_client(qtbot, engine):
    """An AiClient on the real bundled model (the session's loaded engine, not reloaded per test)."""
    from assistant.gui.worker import AiClient

    client = AiClient(lambda _choice, _progress: EngineSession(engine))
    with qtbot.waitSignal(client.modelLoaded, timeout=30000):
        client.load(ModelChoice())
    yield client
    client.shutdown()
    assert not client._thread.isRunning()


@pytest.fixture
def app_settings() -> AppSettings:
    """Settings with short answers, so end-to-end tests on the real model stay quick."""
    settings = AppSettings()
    settings.sampler = SamplerSettings(max_new_tokens=24, seed=1)
    return settings
