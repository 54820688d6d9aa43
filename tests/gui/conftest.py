"""GUI fixtures: an AiClient on a fake session for fast plumbing tests, and one on the real bundled model."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from assistant.core.settings import AppSettings, SamplerSettings
from assistant.engine.generate import CancelToken, GenerationStats, TextStream
from assistant.engine.session import EngineSession, ModelChoice, ModelInfo
from assistant.engine.voices import VoiceReport


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
        return ModelInfo(
            name="Fake model", device="cpu", dtype="float32", context_length=2048, load_seconds=0.0, voice=self.voice
        )

    # --- voices: learning one (steps with a falling loss, Stop honoured) and switching to one -----------------

    voice: str = ""
    voice_calls: list[str] = field(default_factory=list)
    """Every set_voice call, in order."""
    train_steps: int = 20
    train_delay: float = 0.005
    pause_after: int | None = None
    """Training waits after this step until ``resume`` is set or Stop is pressed (to act while it runs)."""
    resume: threading.Event = field(default_factory=threading.Event)
    learnt: list[tuple[str, object, bool]] = field(default_factory=list)
    """(name, options, replace) of every learn_voice call."""

    def set_voice(self, name: str) -> ModelInfo:
        from assistant.engine.voices import read_voice

        self.voice_calls.append(name)
        self.threads.add(threading.get_ident())
        if name:
            read_voice(name)  # ModelError with the engine's sentence when it is missing
        self.voice = name
        return self.describe()

    def learn_voice(
        self, texts, name, options=None, progress=None, cancel=None, replace=False, loading=None
    ) -> VoiceReport:
        from assistant.core.errors import InputError
        from assistant.engine.voices import TrainingProgress, TrainingStopped, check_name, voice_folder

        self.learnt.append((name, options, replace))
        self.threads.add(threading.get_ident())
        name = check_name(name)
        folder = voice_folder(name)
        if folder.exists() and not replace:
            raise InputError(f"A voice named '{name}' exists already; choose another name, or replace it.")
        report_progress = progress or (lambda _progress: None)
        for stage in ("Reading the model", "Preparing the weights"):
            if loading is not None:
                loading(stage, None)
            time.sleep(self.train_delay)
        before = 30.0
        report_progress(TrainingProgress(0, 0, math.nan, 0.0, 0.0, 60.0, stage="measuring"))
        steps, best, step, stopped = self.train_steps, before, 0, False
        while step < steps:
            if cancel is not None and cancel.cancelled:
                stopped = True
                break
            time.sleep(self.train_delay)
            step += 1
            held_out = before * (1 - 0.02 * step) if step % 5 == 0 else None
            best = min(best, held_out or best)
            report_progress(
                TrainingProgress(
                    step, steps, 3.0 - 0.05 * step, 250.0, step * 0.1, (steps - step) * 0.1, held_out, best
                )
            )
            if self.pause_after == step:
                while not self.resume.is_set() and not (cancel is not None and cancel.cancelled):
                    time.sleep(0.005)
        if step == 0:
            raise TrainingStopped("Learning the voice was stopped before it began; nothing was saved.")
        saving = TrainingProgress(step, steps, math.nan, 0.0, step * 0.1, 0.0, best_perplexity=best, stage="saving")
        report_progress(saving)
        report = VoiceReport(
            name=name, base={"name": "Fake model"}, texts=[], words=texts.words, train_words=texts.words,
            held_out_words=texts.held_out_words, train_tokens=1000, held_out_tokens=100, options={},
            perplexity_before=before, perplexity_after=best, steps=step, best_step=step, epochs_done=1.0,
            minutes=0.5, tokens_per_s=250.0, peak_memory_mb=1536.0, device="cpu", stopped=stopped,
            samples={"prompt": "Verily, the heron", "base": " flew over the lake.", "voice": " saith unto the marsh."},
        )  # fmt: skip
        folder.mkdir(parents=True, exist_ok=True)
        for file in ("adapter_model.safetensors", "adapter_config.json"):
            (folder / file).write_bytes(b"{}")
        (folder / "report.json").write_text(json.dumps(report.to_dict()), encoding="utf-8")
        return report

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
