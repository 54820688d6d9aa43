"""What the GUI worker holds: a loaded model that runs task requests. No Qt here.

The worker only needs ``describe()`` and ``run()``, so GUI plumbing tests can hand it a fake session while the
app (and the end-to-end tests) use :class:`EngineSession` on a real model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from assistant.core.settings import SamplerSettings
from assistant.engine.completion import InlineCompleter, InlineRequest, InlineResult
from assistant.engine.generate import CancelToken, Engine, TextStream
from assistant.engine.tasks import TaskRequest, run_task

if TYPE_CHECKING:
    from assistant.core.voice_texts import VoiceTexts
    from assistant.engine.voices import ProgressCallback as TrainingProgressCallback
    from assistant.engine.voices import TrainingOptions, VoiceReport

ProgressCallback = Callable[[str, float | None], None]


@dataclass(frozen=True)
class ModelChoice:
    """Which model to load and where; comes from the settings."""

    model: str = ""
    device: str = "auto"
    dtype: str = "auto"
    quantize: str = "auto"
    voice: str = ""
    """A voice learnt on this model (``assistant.engine.voices``); "" for none."""


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
    voice: str = ""
    """The voice the model writes in; "" for none."""


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
            voice=self.engine.voice,
        )

    def set_voice(self, name: str) -> ModelInfo:
        """Write in the voice ``name`` ("" for none) from the next request on, without reloading the base model.

        Raises ModelError with a sentence for a missing voice or one learnt on another model (the voice in use stays).
        """
        self.engine.set_voice(name or None)
        self._completer = None  # its cached suggestions were written in the other voice
        return self.describe()

    def learn_voice(
        self,
        texts: VoiceTexts,
        name: str,
        options: TrainingOptions | None = None,
        progress: TrainingProgressCallback | None = None,
        cancel: CancelToken | None = None,
        replace: bool = False,
        loading: ProgressCallback | None = None,
    ) -> VoiceReport:
        """Learn a voice on this session's base model; Stop (``cancel``) keeps the best adapter so far.

        Training needs the full-precision weights, so they are loaded apart (``loading`` hears the stages) and let go
        of at the end; the session's own model is untouched and writes as before once training ends.
        """
        import gc

        from assistant.engine.voices import TrainingStopped, load_for_training, train_voice

        if cancel is not None and cancel.cancelled:
            raise TrainingStopped()
        loaded = self.engine.loaded
        source = loaded.source
        training = load_for_training(
            str(source.gguf_file or source.location), device=loaded.placement.device, progress=loading
        )
        try:
            if cancel is not None and cancel.cancelled:  # Stop while the weights loaded: say so now, not later
                raise TrainingStopped()
            return train_voice(training, texts, name, options, progress=progress, cancel=cancel, replace=replace)
        finally:
            del training
            gc.collect()

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
        choice.model or None,
        device=choice.device,
        dtype=choice.dtype,
        progress=progress,
        quantize=choice.quantize,
        voice=choice.voice or None,
    )
    return EngineSession(Engine(loaded))
