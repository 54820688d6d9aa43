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
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from assistant.core.errors import PenwrightError
from assistant.core.settings import SamplerSettings
from assistant.engine.generate import CancelToken
from assistant.engine.remote import RemoteChoice
from assistant.engine.session import ModelChoice, ModelInfo, ModelSession, ProgressCallback

log = logging.getLogger(__name__)

BATCH_SECONDS = 0.04


class _TextBatcher:
    """Hands text on at most once per ``BATCH_SECONDS`` and never holds it longer.

    The worker thread is inside the model's generator between pieces, so it cannot flush on a timer of its own: a
    piece that came too soon after the last batch would otherwise wait for the next piece, which can be seconds away
    (the next part of a synopsis, a long prefill). A short-lived timer thread sends it when the interval ends;
    emitting a queued signal from it is safe, and the lock keeps the pieces in order.
    """

    def __init__(self, emit: Callable[[str], None]) -> None:
        self._emit = emit
        self._lock = threading.Lock()
        self._buffer: list[str] = []
        self._last_sent = -BATCH_SECONDS
        self._timer: threading.Timer | None = None

    def add(self, piece: str) -> None:
        with self._lock:
            self._buffer.append(piece)
            wait = BATCH_SECONDS - (time.perf_counter() - self._last_sent)
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
            text = "".join(self._buffer)
            self._buffer.clear()
            self._last_sent = time.perf_counter()
            self._emit(text)


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

    def __init__(self, factory: SessionFactory) -> None:
        super().__init__()
        self._factory = factory
        self._session: ModelSession | None = None
        self._load_error = ""

    @Slot(int, object)
    def load(self, load_id: int, choice: BackendChoice) -> None:
        try:
            session = self._factory(choice, lambda stage, _fraction: self.loadProgress.emit(load_id, stage))
        except PenwrightError as error:
            self._load_failed(load_id, choice, str(error))
            return
        except Exception as error:  # a bug or a library failure: say so, keep the old model
            log.error("Model load failed:\n%s", traceback.format_exc())
            self._load_failed(load_id, choice, f"The model could not be loaded: {error}")
            return
        self._close_session()
        self._session = session
        self._load_error = ""
        self.loaded.emit(load_id, session.describe())

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


class AiClient(QObject):
    """The UI thread's handle on the worker: start jobs, load models, shut down cleanly.

    Signals:
        stateChanged(state): "loading", "ready", "generating" or "error".
        loadProgress(stage): a model-loading stage.
        modelLoaded(ModelInfo): a model is ready.
        loadFailed(message): loading failed; the previous model (if any) is still in use.
        speedChanged(tokens_per_second): decode speed of the last generation.
    """

    stateChanged = Signal(str)
    loadProgress = Signal(str)
    modelLoaded = Signal(object)
    loadFailed = Signal(str)
    speedChanged = Signal(float)

    _requestLoad = Signal(int, object)
    _requestRun = Signal(int, object, object, object)
    _requestSuggest = Signal(int, object, object)

    def __init__(self, factory: SessionFactory | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._ids = itertools.count(1)
        self._jobs: dict[int, AiJob] = {}
        self._pending_loads: set[int] = set()
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
        self._set_state("loading")
        self._requestLoad.emit(load_id, choice)
        return load_id

    def start(self, request: Any, settings: SamplerSettings) -> AiJob:
        # A user's action goes first: pending inline suggestions are dropped so it never waits behind them.
        for pending in [job for job in self._jobs.values() if job.inline]:
            pending.discard()
        job = AiJob(next(self._ids), self)
        self._jobs[job.id] = job
        self._set_state("generating")
        self._requestRun.emit(job.id, request, settings, job.cancel_token)
        return job

    def suggest(self, request: Any) -> AiJob:
        """Ask for an inline suggestion; discard the returned job when the text changes."""
        job = AiJob(next(self._ids), self, inline=True)
        self._jobs[job.id] = job
        self._requestSuggest.emit(job.id, request, job.cancel_token)
        return job

    def stop_all(self) -> None:
        for job in list(self._jobs.values()):
            job.stop()

    @property
    def busy(self) -> bool:
        """True while a user's action (not an inline suggestion) runs or waits."""
        return any(not job.inline for job in self._jobs.values())

    def shutdown(self, timeout_ms: int = 30000) -> None:
        """Cancel everything, then stop the thread and wait for it: no QThread outlives the window."""
        for job in list(self._jobs.values()):
            job.discard()
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
        if self._pending_loads:
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
