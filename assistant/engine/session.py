"""What the GUI worker holds: a loaded model that runs task requests. No Qt here.

The worker only needs ``describe()`` and ``run()``, so GUI plumbing tests can hand it a fake session while the
app (and the end-to-end tests) use :class:`EngineSession` on a real model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from assistant.core.settings import SamplerSettings
from assistant.engine.completion import InlineCompleter, InlineRequest, InlineResult
from assistant.engine.generate import CancelToken, Engine, TextStream
from assistant.engine.tasks import TaskRequest, run_task

ProgressCallback = Callable[[str, float | None], None]


@dataclass(frozen=True)
class ModelChoice:
    """Which model to load and where; comes from the settings."""

    model: str = ""
    device: str = "auto"
    dtype: str = "auto"
    quantize: str = "auto"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    device: str
    dtype: str
    context_length: int
    load_seconds: float
    weights: str = ""
    """"int8", "int4" or the dtype of unquantized weights."""
    note: str = ""
    """A sentence when the model runs differently from what the settings asked (say, int8 asked on a GPU)."""


SuggestionCallback = Callable[[str], None]
"""Receives the whole suggestion so far each time it changes (stop rules may also shorten it)."""


class ModelSession(Protocol):
    def describe(self) -> ModelInfo: ...

    def suggest(
        self, request: InlineRequest, cancel: CancelToken, on_text: SuggestionCallback | None = None
    ) -> InlineResult: ...

    def run(
        self,
        request: TaskRequest,
        settings: SamplerSettings,
        cancel: CancelToken,
        progress: ProgressCallback | None = None,
    ) -> TextStream: ...


class EngineSession:
    """A real model behind the ModelSession interface."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._completer: InlineCompleter | None = None

    @property
    def completer(self) -> InlineCompleter:
        if self._completer is None:
            self._completer = InlineCompleter(self.engine)
        return self._completer

    def suggest(
        self, request: InlineRequest, cancel: CancelToken, on_text: SuggestionCallback | None = None
    ) -> InlineResult:
        return self.completer.suggest(request, cancel, on_text=on_text)

    def describe(self) -> ModelInfo:
        loaded = self.engine.loaded
        return ModelInfo(
            name=loaded.name,
            device=loaded.placement.device,
            dtype=loaded.placement.dtype_name,
            context_length=loaded.context_length,
            load_seconds=loaded.load_seconds,
            weights=loaded.weights,
            note=self.engine.notes,
        )

    def run(
        self,
        request: TaskRequest,
        settings: SamplerSettings,
        cancel: CancelToken,
        progress: ProgressCallback | None = None,
    ) -> TextStream:
        return run_task(self.engine, request, settings, cancel, progress)


def open_session(choice: ModelChoice, progress: ProgressCallback | None = None) -> EngineSession:
    """Load the chosen model (raising ModelError with a readable sentence when it cannot be)."""
    from assistant.engine.models import load_model

    loaded = load_model(
        choice.model or None, device=choice.device, dtype=choice.dtype, progress=progress, quantize=choice.quantize
    )
    return EngineSession(Engine(loaded))
