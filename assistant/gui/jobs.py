"""One way for a pane to run a model job: start, stream in batches, stop, drop stale results, busy, release.

Every pane (editor, chat, code) and every ghost-text controller owns one :class:`JobRunner`. It holds at most one
job, and starting another discards the running one. That gives the one stale-result rule: a result reaches the
pane only when it comes from the job the runner holds now; a discarded job is silenced at once.

Text reaches the pane in batches, the first at once and then at most one every ``FLUSH_MS``, however fast the worker
sends it or however many of its signals queued up while the UI was busy: a long answer costs a few repaints a second.
Stop sets the job's cancel token right here in the UI thread (a queued signal would wait behind the generation);
the job then ends with ``finish_reason == "cancelled"`` and the text it wrote so far. A job is released (stopped
if it still runs, and let go of) the moment it ends, fails or is discarded; jobs have no Qt parent, so a released
job is freed with its text at once and finished answers never pile up in memory.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from assistant.core.settings import SamplerSettings
from assistant.gui.worker import AiClient, AiJob

FLUSH_MS = 40
"""Streamed text is handed to the pane at most this often: smooth to watch, cheap for the event loop."""


class JobRunner(QObject):
    """At most one model job of one pane, from start to release.

    Signals:
        textArrived(text): more of the current job's text (a batch; never one signal per token).
        suggestionChanged(text): the current inline job's whole suggestion so far (batched; the latest wins).
        progress(stage): the current job's stage ("Summarizing part 2 of 9").
        finished(stats): the current job ended, after its last text; ``stats["finish_reason"]`` is "cancelled"
            after :meth:`stop`. The runner is idle (``busy`` False) while listeners run.
        failed(message): the current job failed, after the text that came before; the message is for the user.
        busyChanged(busy): a job started (True) or the runner went idle (False); emitted after ``finished`` or
            ``failed``, and never as a False/True flicker when one job replaces another.
    """

    textArrived = Signal(str)
    suggestionChanged = Signal(str)
    progress = Signal(str)
    finished = Signal(object)
    failed = Signal(str)
    busyChanged = Signal(bool)

    def __init__(self, client: AiClient, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._client = client
        self._job: AiJob | None = None
        self._pending_text: list[str] = []
        self._pending_suggestion: str | None = None
        self._last_flush = -math.inf
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.timeout.connect(self._flush)
        self._reported_busy = False
        self._replacing = 0

    @property
    def busy(self) -> bool:
        """True from ``start`` until the job has ended, failed or was discarded."""
        return self._job is not None

    @property
    def job(self) -> AiJob | None:
        """The running job, if any (for its id and cancel token; its results come through this runner)."""
        return self._job

    def start(self, request: Any, settings: SamplerSettings) -> AiJob:
        """Run a user's request; a running job is discarded first, so its text never lands."""
        with self.replacing():
            self._drop()
            return self._adopt(self._client.start(request, settings))

    def suggest(self, request: Any) -> AiJob:
        """Ask for an inline suggestion (it runs quietly: never counted as the app being busy)."""
        with self.replacing():
            self._drop()
            return self._adopt(self._client.suggest(request))

    def stop(self) -> bool:
        """Ask the running job to end now, keeping what it wrote; ``finished`` follows. False when idle."""
        if self._job is None:
            return False
        self._job.stop()
        return True

    def discard(self) -> None:
        """Drop the running job at once: nothing more of it arrives, and it is released."""
        self._drop()
        self._sync_busy()

    @contextmanager
    def replacing(self) -> Iterator[None]:
        """Discarding one job and starting the next inside this block is one change of ``busy``, not two.

        A pane that starts an action while another runs discards the old job, checks its input, then starts the
        new one: listeners should see it stay busy (or go idle once, if the new action found nothing to do).
        """
        self._replacing += 1
        try:
            yield
        finally:
            self._replacing -= 1
            self._sync_busy()

    # --- the job's signals ---------------------------------------------------------------------------------

    def _adopt(self, job: AiJob) -> AiJob:
        self._job = job
        self._last_flush = -math.inf  # a new job's first text shows at once
        job.chunk.connect(self._on_chunk)
        job.suggestion.connect(self._on_suggestion)
        job.progress.connect(self._on_progress)
        job.finished.connect(self._on_finished)
        job.failed.connect(self._on_failed)
        return job

    def _drop(self) -> None:
        job, self._job = self._job, None
        self._flush_timer.stop()
        self._pending_text.clear()
        self._pending_suggestion = None
        if job is not None:
            job.release()

    def _is_current(self, sender: QObject | None) -> bool:
        """The one stale-result rule: only the job this runner holds now may reach the pane."""
        return sender is not None and sender is self._job

    @Slot(str)
    def _on_chunk(self, text: str) -> None:
        if self._is_current(self.sender()):
            self._pending_text.append(text)
            self._flush_soon()

    @Slot(str)
    def _on_suggestion(self, text: str) -> None:
        if self._is_current(self.sender()):
            self._pending_suggestion = text
            self._flush_soon()

    @Slot(str)
    def _on_progress(self, stage: str) -> None:
        if self._is_current(self.sender()):
            self.progress.emit(stage)

    @Slot(object)
    def _on_finished(self, stats: dict[str, Any]) -> None:
        job = self.sender()
        if self._is_current(job) and self._take_last_text(job):
            self.finished.emit(stats)
            self._sync_busy()

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        job = self.sender()
        if self._is_current(job) and self._take_last_text(job):
            self.failed.emit(message)
            self._sync_busy()

    def _take_last_text(self, job: QObject | None) -> bool:
        """Hand on the ended job's last text and release it; False if a listener discarded it meanwhile."""
        self._flush()
        if job is not self._job:
            return False
        self._drop()
        return True

    # --- batching ------------------------------------------------------------------------------------------

    def _flush_soon(self) -> None:
        if self._flush_timer.isActive():
            return
        wait_ms = FLUSH_MS - (time.monotonic() - self._last_flush) * 1000
        if wait_ms <= 0:
            self._flush()
        else:
            self._flush_timer.start(math.ceil(wait_ms))

    @Slot()
    def _flush(self) -> None:
        self._flush_timer.stop()
        if not self._pending_text and self._pending_suggestion is None:
            return
        self._last_flush = time.monotonic()
        text, self._pending_text = "".join(self._pending_text), []
        suggestion, self._pending_suggestion = self._pending_suggestion, None
        if text:
            self.textArrived.emit(text)
        if suggestion is not None and self._job is not None:
            self.suggestionChanged.emit(suggestion)

    def _sync_busy(self) -> None:
        if self._replacing:
            return
        busy = self._job is not None
        if busy != self._reported_busy:
            self._reported_busy = busy
            self.busyChanged.emit(busy)
