"""THE bridge between the UI and the model: one QObject in one QThread owns the model session.

Requests go in through queued signals and carry ids; results come back as signals with the same id, and the
UI-side :class:`AiClient` drops results of jobs that were discarded (a newer request replaced them). Stop never
travels as a queued signal (it would wait behind the running generation): the UI thread sets the job's
:class:`CancelToken` directly and the generation ends within one token. Text reaches the UI in batches, at most
one signal every ``BATCH_SECONDS``, so long answers never flood the event loop with repaints, and no piece waits
longer than that: text held back for the interval goes out when it ends, even while the model is busy.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot

from assistant.core.errors import PenwrightError
from assistant.core.settings import SamplerSettings
from assistant.engine.generate import CancelToken
from assistant.engine.remote import RemoteChoice
from assistant.engine.session import ModelChoice, ModelInfo, ModelSession, ProgressCallback
from assistant.engine.voices import TrainingStopped

if TYPE_CHECKING:
    from assistant.core.voice_texts import VoiceTexts
    from assistant.engine.voices import TrainingOptions, TrainingProgress, VoiceReport

log = logging.getLogger(__name__)

BATCH_SECONDS = 0.04
TRAINING_BATCH_SECONDS = 0.1
"""Training progress reaches the UI at most this often (as a list of steps, so the loss chart misses none)."""
LEARNING_MESSAGE = (
    "The model is learning your voice; it writes again when that ends, or when you press Stop in Learn my voice."
)
"""What a writer is told when they ask the model for text while a voice is being learnt."""
TRAINING_STOPPED_MESSAGE = str(TrainingStopped())

T = TypeVar("T")


class _Batcher(Generic[T]):
    """Hands items on, as one list, at most once per ``interval`` seconds and never holds them longer.

    The worker thread is inside the model's generator (or a training step) between items, so it cannot flush on a
    timer of its own: an item that came too soon after the last batch would otherwise wait for the next one, which
    can be seconds away (the next part of a synopsis, a long prefill, a slow training step). A short-lived timer
    thread sends it when the interval ends; emitting a queued signal from it is safe, and the lock keeps the items in
    order.
    """

    def __init__(self, emit: Callable[[list[T]], None], interval: float = BATCH_SECONDS) -> None:
        self._emit = emit
        self._interval = interval
        self._lock = threading.Lock()
        self._buffer: list[T] = []
        self._last_sent = -interval
        self._timer: threading.Timer | None = None

    def add(self, item: T) -> None:
        with self._lock:
            self._buffer.append(item)
            wait = self._interval - (time.perf_counter() - self._last_sent)
            if wait <= 0:
                self._send()
            elif self._timer is None:
                self._timer = threading.Timer(wait, self._when_due)
                self._timer.daemon = True
                self._timer.start()

    def close(self) -> None:
        """Send what is held now (before ``finished`` or ``failed``) and stop the timer."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._send()

    def _when_due(self) -> None:
        with self._lock:
            self._timer = None
            self._send()

    def _send(self) -> None:
        if self._buffer:
            items = list(self._buffer)
            self._buffer.clear()
            self._last_sent = time.perf_counter()
            self._emit(items)


class _TextBatcher(_Batcher[str]):
    """Generated text, joined into one piece per batch."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        super().__init__(lambda pieces: emit("".join(pieces)))


BackendChoice = ModelChoice | RemoteChoice
"""A local model to load, or a remote server to connect to."""
SessionFactory = Callable[[BackendChoice, ProgressCallback], ModelSession]


def default_session_factory(choice: BackendChoice, progress: ProgressCallback) -> ModelSession:
    if isinstance(choice, RemoteChoice):
        from assistant.engine.remote import open_remote_session

        return open_remote_session(choice, progress)
    from assistant.engine.session import open_session

    return open_session(choice, progress)


class EngineWorker(QObject):
    """Runs in the worker thread. Every model call happens here, one at a time, in the order requested.

    Signals:
        loadProgress(load_id, stage): a model-loading stage, for the status bar.
        loaded(load_id, ModelInfo): the new model is ready and replaces the old one.
        loadFailed(load_id, message): the model could not be loaded; the previous one stays in use, except after a
            remote server failed: then there is no model (``unloaded`` came first), never a silent local one.
        unloaded(load_id): the previous model was let go of (a remote server was chosen and could not be used).
        chunk(job_id, text): a batch of generated text.
        progress(job_id, stage): a long job's stage ("Summarizing part 2 of 9").
        finished(job_id, stats): the job ended (stats is a dict; finish_reason "cancelled" after Stop).
        failed(job_id, message): the job failed with a sentence for the user.
        suggestion(job_id, text): an inline suggestion so far (the whole text, not a delta).
        trainingLoading(job_id, stage): loading the full-precision copy a voice is learnt on.
        trainingProgress(job_id, steps): a list of TrainingProgress, at most one signal per TRAINING_BATCH_SECONDS.
        trainingFinished(job_id, VoiceReport): the voice was learnt and saved (also after Stop: the best so far).
        trainingFailed(job_id, message): no voice was saved; the message is for the user.
        voiceChanged(request_id, ModelInfo): the model writes in another voice now (or in none).
        voiceFailed(request_id, message): the voice could not be used; the previous one stays.
    """

    loadProgress = Signal(int, str)
    loaded = Signal(int, object)
    loadFailed = Signal(int, str)
    unloaded = Signal(int)
    chunk = Signal(int, str)
    progress = Signal(int, str)
    finished = Signal(int, object)
    failed = Signal(int, str)
    suggestion = Signal(int, str)
    trainingLoading = Signal(int, str)
    trainingProgress = Signal(int, object)
    trainingFinished = Signal(int, object)
    trainingFailed = Signal(int, str)
    voiceChanged = Signal(int, object)
    voiceFailed = Signal(int, str)

    def __init__(self, factory: SessionFactory) -> None:
        super().__init__()
        self._factory = factory
        self._session: ModelSession | None = None
        self._load_error = ""

    @Slot(int, object)
    def load(self, load_id: int, choice: BackendChoice) -> None:
        session, error = self._open(load_id, choice)
        voice_problem = ""
        if session is None and isinstance(choice, ModelChoice) and choice.voice:
            # Perhaps the voice is what failed (deleted, learnt on another model): write without it, never not at all.
            voice_problem = error
            session, error = self._open(load_id, replace(choice, voice=""))
        if session is None:
            self._load_failed(load_id, choice, error)
            return
        self._close_session()
        self._session = session
        self._load_error = ""
        info = session.describe()
        if voice_problem:
            said = f"{voice_problem} The model writes without a voice for now."
            info = replace(info, voice="", note=f"{info.note} {said}".strip())
        self.loaded.emit(load_id, info)

    def _open(self, load_id: int, choice: BackendChoice) -> tuple[ModelSession | None, str]:
        """A new session, or None and a sentence saying why not."""
        try:
            return self._factory(choice, lambda stage, _fraction: self.loadProgress.emit(load_id, stage)), ""
        except PenwrightError as error:
            return None, str(error)
        except Exception as error:  # a bug or a library failure: say so, keep the old model
            log.error("Model load failed:\n%s", traceback.format_exc())
            return None, f"The model could not be loaded: {error}"

    def _load_failed(self, load_id: int, choice: BackendChoice, message: str) -> None:
        self._load_error = message
        if isinstance(choice, RemoteChoice) and self._session is not None:
            # The writer chose the server: answering with the local model instead would be a silent fall-back.
            self._close_session()
            self._session = None
            self.unloaded.emit(load_id)
        self.loadFailed.emit(load_id, message)

    def _close_session(self) -> None:
        close = getattr(self._session, "close", None)  # a remote session's connections
        if callable(close):
            close()

    @Slot(int, object, object, object)
    def run(self, job_id: int, request: Any, settings: SamplerSettings, cancel: CancelToken) -> None:
        if cancel.cancelled:
            self.finished.emit(job_id, {"finish_reason": "cancelled", "new_tokens": 0})
            return
        if self._session is None:
            reason = self._load_error or "The model is not loaded."
            self.failed.emit(job_id, f"{reason} Choose another model in Settings.")
            return
        batcher = _TextBatcher(lambda text: self.chunk.emit(job_id, text))
        try:
            stream = self._session.run(
                request, settings, cancel, lambda stage, _fraction: self.progress.emit(job_id, stage)
            )
            for piece in stream:
                batcher.add(piece)
            batcher.close()
            self.finished.emit(job_id, stream.stats.to_dict())
        except PenwrightError as error:
            batcher.close()
            self.failed.emit(job_id, str(error))
        except Exception as error:
            batcher.close()
            log.error("Generation failed:\n%s", traceback.format_exc())
            self.failed.emit(job_id, f"Something went wrong while writing: {error}")

    @Slot(int, object, object)
    def suggest(self, job_id: int, request: Any, cancel: CancelToken) -> None:
        """An inline suggestion; skipped at once when the user typed on before its turn came."""
        if cancel.cancelled or self._session is None:
            self.finished.emit(job_id, {"finish_reason": "cancelled", "new_tokens": 0})
            return
        last_emit = -BATCH_SECONDS

        def on_text(text: str) -> None:
            # Whole texts, at most one per batch interval: the final one comes with ``finished`` anyway.
            nonlocal last_emit
            now = time.perf_counter()
            if now - last_emit >= BATCH_SECONDS:
                last_emit = now
                self.suggestion.emit(job_id, text)

        try:
            result = self._session.suggest(request, cancel, on_text)
        except PenwrightError as error:
            self.failed.emit(job_id, str(error))
            return
        except Exception as error:
            log.error("Suggestion failed:\n%s", traceback.format_exc())
            self.failed.emit(job_id, f"The suggestion failed: {error}")
            return
        stats = {
            "finish_reason": "cancelled" if result.cancelled else "done",
            "text": result.text,
            "from_cache": result.from_cache,
            "prefill_tokens": result.prefill_tokens,
            "reused_tokens": result.reused_tokens,
            "new_tokens": result.new_tokens,
            "first_text_ms": result.first_text_ms,
            "total_ms": result.total_ms,
        }
        self.finished.emit(job_id, stats)

    @Slot(int, object, str, object, bool, object)
    def learnVoice(
        self,
        job_id: int,
        texts: VoiceTexts,
        name: str,
        options: TrainingOptions | None,
        replace_voice: bool,
        cancel: CancelToken,
    ) -> None:
        """Learn a voice on the loaded model's base weights; Stop (``cancel``) keeps the best so far."""
        if cancel.cancelled:
            self.trainingFailed.emit(job_id, TRAINING_STOPPED_MESSAGE)
            return
        if self._session is None:
            reason = self._load_error or "The model is not loaded."
            self.trainingFailed.emit(job_id, f"{reason} Choose another model in Settings.")
            return
        learn = getattr(self._session, "learn_voice", None)
        if not callable(learn):
            self.trainingFailed.emit(job_id, "This model cannot learn a voice.")
            return
        batcher: _Batcher[TrainingProgress] = _Batcher(
            lambda steps: self.trainingProgress.emit(job_id, steps), TRAINING_BATCH_SECONDS
        )
        try:
            report = learn(
                texts,
                name,
                options,
                progress=batcher.add,
                cancel=cancel,
                replace=replace_voice,
                loading=lambda stage, _fraction: self.trainingLoading.emit(job_id, stage),
            )
        except PenwrightError as error:
            batcher.close()
            self.trainingFailed.emit(job_id, str(error) or TRAINING_STOPPED_MESSAGE)
            return
        except Exception as error:
            batcher.close()
            log.error("Learning a voice failed:\n%s", traceback.format_exc())
            self.trainingFailed.emit(job_id, f"Learning the voice failed: {error}")
            return
        batcher.close()
        self.trainingFinished.emit(job_id, report)
        if replace_voice and self._session.describe().voice == report.name:
            self._reload_voice(report.name)

    def _reload_voice(self, name: str) -> None:
        """The voice in use was learnt again: write in the new one (the old one's weights are still in the model)."""
        set_voice = getattr(self._session, "set_voice", None)
        if not callable(set_voice):
            return
        try:
            set_voice("")
            self.voiceChanged.emit(0, set_voice(name))
        except Exception as error:
            log.warning("The relearnt voice could not be put in use: %s", error)
            if self._session is not None:
                self.voiceChanged.emit(0, self._session.describe())
            self.voiceFailed.emit(0, f"The voice '{name}' was learnt again but could not be put in use: {error}")

    @Slot(int, str)
    def setVoice(self, request_id: int, name: str) -> None:
        """Write in the voice ``name`` ("" for none) without reloading the model; on failure the previous one stays."""
        if self._session is None:
            reason = self._load_error or "The model is not loaded."
            self.voiceFailed.emit(request_id, f"{reason} A voice needs a model.")
            return
        set_voice = getattr(self._session, "set_voice", None)
        if not callable(set_voice):
            self.voiceFailed.emit(request_id, "This model cannot write in a voice.")
            return
        try:
            info = set_voice(name)
        except PenwrightError as error:
            self.voiceFailed.emit(request_id, str(error))
            return
        except Exception as error:
            log.error("Switching the voice failed:\n%s", traceback.format_exc())
            self.voiceFailed.emit(request_id, f"The voice '{name}' could not be used: {error}")
            return
        self.voiceChanged.emit(request_id, info)


class AiJob(QObject):
    """One request as the UI sees it. Lives in the UI thread.

    Signals:
        chunk(text): more text (batched).
        progress(stage): a long job's stage.
        finished(stats): the job ended; ``stats["finish_reason"]`` is "cancelled" after Stop.
        failed(message): the job failed; the message is for the user.
        suggestion(text): an inline suggestion so far (whole text).
    """

    chunk = Signal(str)
    suggestion = Signal(str)
    progress = Signal(str)
    finished = Signal(object)
    failed = Signal(str)

    def __init__(self, job_id: int, client: AiClient, inline: bool = False) -> None:
        super().__init__()  # no Qt parent: a job lives while someone holds it, and goes with its text when no one does
        self.id = job_id
        self.inline = inline
        """Inline suggestions run quietly: they never show as "Writing…" nor count as busy."""
        self.cancel_token = CancelToken()
        self.text = ""
        self.done = False
        self._client = client

    def stop(self) -> None:
        """Stop generating now; called from the UI thread, takes effect within one token."""
        self.cancel_token.cancel()

    def discard(self) -> None:
        """Stop and drop: nothing this job still produces reaches the UI."""
        self.cancel_token.cancel()
        self._client._forget(self.id)

    def release(self) -> None:
        """The pane is done with this job: drop it if it still runs. Let go of it then, and it is freed.

        A job has no Qt parent, so it lives only while the client (until it ends) and its pane hold it: an ended job
        that nobody keeps is freed with its text at once. :class:`assistant.gui.jobs.JobRunner` releases and lets go
        of every job it started.
        """
        if not self.done:
            self.discard()


class VoiceTraining(QObject):
    """Learning one voice, as the UI sees it. Lives in the UI thread.

    Signals:
        loading(stage): loading the full-precision copy of the model that the voice is learnt on.
        progressed(steps): a list of new TrainingProgress (batched: a few signals a second at most).
        finished(VoiceReport): the voice was saved; ``report.stopped`` after Stop (the best so far was kept).
        failed(message): no voice was saved; the message is for the user.
    """

    loading = Signal(str)
    progressed = Signal(object)
    finished = Signal(object)
    failed = Signal(str)

    def __init__(self, job_id: int, name: str) -> None:
        super().__init__()
        self.id = job_id
        self.name = name
        self.cancel_token = CancelToken()
        self.steps: list[TrainingProgress] = []
        """Every progress report so far, in order (a chart opened late draws them all)."""
        self.report: VoiceReport | None = None
        self.error = ""
        self.done = False

    def stop(self) -> None:
        """Stop learning at the next step, keeping the best voice so far; called from the UI thread."""
        self.cancel_token.cancel()

    @property
    def stopping(self) -> bool:
        return self.cancel_token.cancelled and not self.done


class AiClient(QObject):
    """The UI thread's handle on the worker: start jobs, load models, shut down cleanly.

    Signals:
        stateChanged(state): "loading", "ready", "generating", "learning" (a voice) or "error".
        loadProgress(stage): a model-loading stage.
        modelLoaded(ModelInfo): a model is ready.
        loadFailed(message): loading failed; the previous model (if any) is still in use.
        speedChanged(tokens_per_second): decode speed of the last generation.
        voiceChanged(ModelInfo): the model writes in another voice now (``info.voice``; "" for none), not reloaded.
        voiceFailed(message): a voice could not be used; the previous one stays.

    While a voice is learnt the model is busy for minutes: a user's request is refused at once with
    ``LEARNING_MESSAGE`` (its job fails with that sentence, which the pane shows) rather than left waiting unseen,
    and inline suggestions end quietly without reaching the worker, so none pile up behind the training.
    """

    stateChanged = Signal(str)
    loadProgress = Signal(str)
    modelLoaded = Signal(object)
    loadFailed = Signal(str)
    speedChanged = Signal(float)
    voiceChanged = Signal(object)
    voiceFailed = Signal(str)

    _requestLoad = Signal(int, object)
    _requestRun = Signal(int, object, object, object)
    _requestSuggest = Signal(int, object, object)
    _requestLearnVoice = Signal(int, object, str, object, bool, object)
    _requestSetVoice = Signal(int, str)

    def __init__(self, factory: SessionFactory | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._ids = itertools.count(1)
        self._jobs: dict[int, AiJob] = {}
        self._pending_loads: set[int] = set()
        self._training: VoiceTraining | None = None
        self.model_info: ModelInfo | None = None
        self.state = "loading"
        self._thread = QThread()
        self._thread.setObjectName("penwright-model-worker")
        self._worker = EngineWorker(factory or default_session_factory)
        self._worker.moveToThread(self._thread)
        self._thread.finished.connect(self._worker.deleteLater)
        self._requestLoad.connect(self._worker.load)
        self._requestRun.connect(self._worker.run)
        self._requestSuggest.connect(self._worker.suggest)
        self._requestLearnVoice.connect(self._worker.learnVoice)
        self._requestSetVoice.connect(self._worker.setVoice)
        self._worker.trainingLoading.connect(self._on_training_loading)
        self._worker.trainingProgress.connect(self._on_training_progress)
        self._worker.trainingFinished.connect(self._on_training_finished)
        self._worker.trainingFailed.connect(self._on_training_failed)
        self._worker.voiceChanged.connect(self._on_voice_changed)
        self._worker.voiceFailed.connect(self._on_voice_failed)
        self._worker.suggestion.connect(self._on_suggestion)
        self._worker.loadProgress.connect(self._on_load_progress)
        self._worker.loaded.connect(self._on_loaded)
        self._worker.loadFailed.connect(self._on_load_failed)
        self._worker.unloaded.connect(self._on_unloaded)
        self._worker.chunk.connect(self._on_chunk)
        self._worker.progress.connect(self._on_progress)
        self._worker.finished.connect(self._on_finished)
        self._worker.failed.connect(self._on_failed)
        self._thread.start()

    # --- requests ------------------------------------------------------------------------------------------

    def load(self, choice: BackendChoice) -> int:
        load_id = next(self._ids)
        self._pending_loads.add(load_id)
        self._update_idle_state()
        self._requestLoad.emit(load_id, choice)
        return load_id

    def start(self, request: Any, settings: SamplerSettings) -> AiJob:
        # A user's action goes first: pending inline suggestions are dropped so it never waits behind them.
        for pending in [job for job in self._jobs.values() if job.inline]:
            pending.discard()
        job = AiJob(next(self._ids), self)
        self._jobs[job.id] = job
        if self.learning:  # refused at once, after the caller has connected to the job
            QTimer.singleShot(0, lambda job_id=job.id: self._on_failed(job_id, LEARNING_MESSAGE))
            return job
        self._set_state("generating")
        self._requestRun.emit(job.id, request, settings, job.cancel_token)
        return job

    def suggest(self, request: Any) -> AiJob:
        """Ask for an inline suggestion; discard the returned job when the text changes."""
        job = AiJob(next(self._ids), self, inline=True)
        self._jobs[job.id] = job
        if self.learning:  # ends quietly, never queued behind minutes of training
            cancelled = {"finish_reason": "cancelled", "new_tokens": 0}
            QTimer.singleShot(0, lambda job_id=job.id: self._on_finished(job_id, cancelled))
            return job
        self._requestSuggest.emit(job.id, request, job.cancel_token)
        return job

    def learn_voice(
        self, texts: VoiceTexts, name: str, options: TrainingOptions | None = None, replace: bool = False
    ) -> VoiceTraining:
        """Learn a voice from ``texts`` in the worker thread; stop it with ``training.stop()`` (keeps the best)."""
        training = VoiceTraining(next(self._ids), name)
        if self._training is not None:
            message = "A voice is being learnt already; wait for it to end, or press Stop."
            QTimer.singleShot(0, lambda: self._end_training(training, None, message))
            return training
        for pending in [job for job in self._jobs.values() if job.inline]:
            pending.discard()
        self._training = training
        self._update_idle_state()
        self._requestLearnVoice.emit(training.id, texts, name, options, replace, training.cancel_token)
        return training

    @property
    def training(self) -> VoiceTraining | None:
        """The voice being learnt now, if any."""
        return self._training

    @property
    def learning(self) -> bool:
        """True while a voice is learnt (the model writes nothing meanwhile)."""
        return self._training is not None

    def set_voice(self, name: str) -> int:
        """Write in the voice ``name`` ("" for none) from the next request on; the model is not reloaded.

        The answer is ``voiceChanged`` or ``voiceFailed``. While a voice is learnt the switch waits for it to end.
        """
        request_id = next(self._ids)
        self._requestSetVoice.emit(request_id, name)
        return request_id

    def stop_all(self) -> None:
        for job in list(self._jobs.values()):
            job.stop()

    @property
    def busy(self) -> bool:
        """True while a user's action (not an inline suggestion) runs or waits, or a voice is learnt."""
        return self.learning or any(not job.inline for job in self._jobs.values())

    def shutdown(self, timeout_ms: int = 30000) -> None:
        """Cancel everything, then stop the thread and wait for it: no QThread outlives the window.

        A voice being learnt stops at its next step and keeps the best so far before the thread ends.
        """
        for job in list(self._jobs.values()):
            job.discard()
        if self._training is not None:
            self._training.stop()
        self._thread.quit()
        if not self._thread.wait(timeout_ms):
            log.warning("The model worker did not stop within %d ms", timeout_ms)

    # --- results -------------------------------------------------------------------------------------------

    def _forget(self, job_id: int) -> None:
        self._jobs.pop(job_id, None)
        self._update_idle_state()

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.stateChanged.emit(state)

    def _update_idle_state(self) -> None:
        if self.learning:  # a model asked for meanwhile loads once learning ends
            self._set_state("learning")
        elif self._pending_loads:
            self._set_state("loading")
        elif self.busy:
            self._set_state("generating")
        elif self.model_info is None:
            self._set_state("error")
        else:
            self._set_state("ready")

    @Slot(int, str)
    def _on_load_progress(self, load_id: int, stage: str) -> None:
        if load_id in self._pending_loads:
            self.loadProgress.emit(stage)

    @Slot(int, object)
    def _on_loaded(self, load_id: int, info: ModelInfo) -> None:
        self._pending_loads.discard(load_id)
        self.model_info = info
        self.modelLoaded.emit(info)
        self._update_idle_state()

    @Slot(int)
    def _on_unloaded(self, _load_id: int) -> None:
        self.model_info = None

    @Slot(int, str)
    def _on_load_failed(self, load_id: int, message: str) -> None:
        self._pending_loads.discard(load_id)
        self.loadFailed.emit(message)
        self._update_idle_state()

    @Slot(int, str)
    def _on_chunk(self, job_id: int, text: str) -> None:
        job = self._jobs.get(job_id)
        if job is not None:  # a discarded (stale) job's text is dropped here
            job.text += text
            job.chunk.emit(text)

    @Slot(int, str)
    def _on_suggestion(self, job_id: int, text: str) -> None:
        job = self._jobs.get(job_id)
        if job is not None:
            job.text = text
            job.suggestion.emit(text)

    @Slot(int, str)
    def _on_progress(self, job_id: int, stage: str) -> None:
        job = self._jobs.get(job_id)
        if job is not None:
            job.progress.emit(stage)

    @Slot(int, object)
    def _on_finished(self, job_id: int, stats: dict[str, Any]) -> None:
        job = self._jobs.get(job_id)
        if job is not None:
            # The job counts as running until its listeners have seen it end: the last text it writes into a
            # document still belongs to it (inline suggestions wait, as they do for the rest of its text).
            job.done = True
            job.finished.emit(stats)
        self._jobs.pop(job_id, None)
        if stats.get("tok_s") and not (job is not None and job.inline):
            self.speedChanged.emit(float(stats["tok_s"]))
        self._update_idle_state()

    @Slot(int, str)
    def _on_failed(self, job_id: int, message: str) -> None:
        job = self._jobs.get(job_id)
        if job is not None:
            job.done = True
            job.failed.emit(message)
        self._jobs.pop(job_id, None)
        self._update_idle_state()

    # --- voices ----------------------------------------------------------------------------------------------

    def _current_training(self, job_id: int) -> VoiceTraining | None:
        training = self._training
        return training if training is not None and training.id == job_id else None

    @Slot(int, str)
    def _on_training_loading(self, job_id: int, stage: str) -> None:
        training = self._current_training(job_id)
        if training is not None:
            training.loading.emit(stage)

    @Slot(int, object)
    def _on_training_progress(self, job_id: int, steps: list[TrainingProgress]) -> None:
        training = self._current_training(job_id)
        if training is not None:
            training.steps.extend(steps)
            training.progressed.emit(steps)

    @Slot(int, object)
    def _on_training_finished(self, job_id: int, report: VoiceReport) -> None:
        training = self._current_training(job_id)
        if training is not None:
            self._end_training(training, report, "")

    @Slot(int, str)
    def _on_training_failed(self, job_id: int, message: str) -> None:
        training = self._current_training(job_id)
        if training is not None:
            self._end_training(training, None, message)

    def _end_training(self, training: VoiceTraining, report: VoiceReport | None, message: str) -> None:
        """The model is free again before listeners hear the end (they may start writing at once)."""
        if self._training is training:
            self._training = None
        training.done = True
        training.report, training.error = report, message
        self._update_idle_state()
        if report is not None:
            training.finished.emit(report)
        else:
            training.failed.emit(message)

    @Slot(int, object)
    def _on_voice_changed(self, _request_id: int, info: ModelInfo) -> None:
        if self.model_info is not None:
            self.model_info = info
        self.voiceChanged.emit(info)

    @Slot(int, str)
    def _on_voice_failed(self, _request_id: int, message: str) -> None:
        self.voiceFailed.emit(message)
