"""One engine, one queue: the server's requests run one at a time on one thread that owns the model.

The same discipline as the app's worker (``gui/worker.py``), without Qt: the event loop that speaks HTTP never
touches the model; it hands a :class:`Job` to :class:`ModelWorker` and reads the job's events (started, text,
finished, failed) from an asyncio queue. The model's KV caches are therefore never shared between threads, and a
chat request reuses the cache of the previous turn exactly as the app's chat pane does. The queue is bounded: a
request that finds it full is refused at once (429 with ``Retry-After``) instead of waiting minutes. Every job
carries a :class:`CancelToken`; the HTTP side sets it when the client goes away, and the generation stops within
one token.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, Protocol

from assistant.core.errors import InputError, PenwrightError
from assistant.core.prompts import InlineRequest, Prompt
from assistant.core.settings import SamplerSettings
from assistant.engine.generate import CancelToken, GenerationStats, TextStream
from assistant.server.protocol import ApiError, server_error

if TYPE_CHECKING:
    from assistant.engine.completion import InlineCompleter, InlineResult
    from assistant.engine.generate import Engine

log = logging.getLogger(__name__)

SuggestionCallback = Callable[[str], None]


class ServedModel(Protocol):
    """What the server needs from a model. :class:`EngineModel` is the real one; plumbing tests pass a fake."""

    @property
    def id(self) -> str: ...

    @property
    def context_length(self) -> int: ...

    def count_prompt(self, prompt: Prompt) -> int:
        """Tokens of the prompt as the model will see it (after the chat template)."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def stream(self, prompt: Prompt, settings: SamplerSettings, cancel: CancelToken) -> TextStream:
        """Generation whose ``stats.new_tokens`` counts tokens as they are made."""
        ...

    def infill_prompt_tokens(self, request: InlineRequest) -> int: ...

    def suggest(
        self,
        request: InlineRequest,
        settings: SamplerSettings,
        cancel: CancelToken,
        on_text: SuggestionCallback,
    ) -> InlineResult: ...


def default_model_id(engine: Engine) -> str:
    """The id clients name the model by: its display name without the "(bundled)" note."""
    return engine.name.removesuffix(" (bundled)")


class EngineModel:
    """The loaded engine as the server uses it: chat and text through ``Engine.stream``, fill-in-the-middle through
    the same :class:`InlineCompleter` (prompt, FIM tokens, rulebook) as the app's inline suggestions."""

    def __init__(self, engine: Engine, model_id: str | None = None) -> None:
        from assistant.engine.completion import InlineCompleter

        self.engine = engine
        self.id = model_id or default_model_id(engine)
        self.completer: InlineCompleter = InlineCompleter(engine)

    @property
    def context_length(self) -> int:
        return self.engine.context_length

    def count_prompt(self, prompt: Prompt) -> int:
        return len(self.engine.encode(prompt))

    def count_tokens(self, text: str) -> int:
        return self.engine.count_tokens(text)

    def stream(self, prompt: Prompt, settings: SamplerSettings, cancel: CancelToken) -> TextStream:
        return self.engine.stream(prompt, settings, cancel)

    def infill_prompt_tokens(self, request: InlineRequest) -> int:
        return len(self.completer.prompt_ids(request))

    def suggest(
        self,
        request: InlineRequest,
        settings: SamplerSettings,
        cancel: CancelToken,
        on_text: SuggestionCallback,
    ) -> InlineResult:
        return self.completer.suggest(request, cancel, settings=settings, on_text=on_text)


# --- jobs and their events -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    """The request was accepted by the model (it fits the context); text follows."""

    prompt_tokens: int


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Finished:
    reason: str
    """OpenAI's finish_reason ("stop", "length"), or "cancelled" (the client left or the server is stopping)."""
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int


@dataclass(frozen=True)
class Failed:
    error: ApiError


Event = Started | Text | Finished | Failed
FINISH_REASONS = {"eos": "stop", "stop": "stop", "length": "length", "cancelled": "cancelled"}


class JobEvents:
    """The HTTP side of a job: events from the worker thread arrive in an asyncio queue on the request's loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.cancel = CancelToken()
        self._loop = loop

    def post(self, event: Event) -> None:
        """Called from the worker thread."""
        try:
            self._loop.call_soon_threadsafe(self.queue.put_nowait, event)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancel.cancel()

    def drain(self) -> list[Event]:
        """Events already waiting (the HTTP side writes them in one go)."""
        events: list[Event] = []
        while not self.queue.empty():
            events.append(self.queue.get_nowait())
        return events


@dataclass
class Job:
    """One request for the worker: chat or text (``prompt``) or fill-in-the-middle (``infill``)."""

    kind: Literal["chat", "text", "infill"]
    settings: SamplerSettings
    max_tokens: int | None
    """What the client asked for; None: ``default_max_tokens``, or the rest of the context when that is None."""
    events: JobEvents
    prompt: Prompt | None = None
    infill: InlineRequest | None = None
    stops: tuple[str, ...] = ()
    default_max_tokens: int | None = None

    @property
    def cancel(self) -> CancelToken:
        return self.events.cancel


class ServerBusy(ApiError):
    def __init__(self, retry_after: int, waiting: int) -> None:
        super().__init__(
            429,
            f"The server is busy: one request is running and {waiting} are waiting, the most it queues. "
            f"Try again in {retry_after} s.",
            type="server_busy",
            code="queue_full",
            headers={"Retry-After": str(retry_after)},
        )


class ModelWorker:
    """Runs jobs one at a time on its own thread, the only thread that touches the model.

    ``max_waiting`` requests may wait while one runs; one more is refused with :class:`ServerBusy`.
    """

    def __init__(self, model: ServedModel, max_waiting: int = 8) -> None:
        self.model = model
        self.max_waiting = max_waiting
        self._lock = threading.RLock()  # re-entrant: Ctrl-C's handler may cancel while this thread submits
        self._wakeup = threading.Condition(self._lock)
        self._waiting: collections.deque[Job] = collections.deque()
        self._current: Job | None = None
        self._closing = False
        self._live: GenerationStats | None = None
        self._tokens_done = 0
        self._durations: collections.deque[float] = collections.deque(maxlen=8)
        self.requests_served = 0
        self.last_finish_reason = ""
        self._thread = threading.Thread(target=self._run, name="penwright-server-model", daemon=True)
        self._thread.start()

    # --- the HTTP side -------------------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        with self._lock:
            if self._closing:
                raise ApiError(503, "The server is shutting down.", type="server_error", code="shutting_down")
            busy = self._current is not None
            if len(self._waiting) + busy > self.max_waiting:
                raise ServerBusy(self._retry_after(), len(self._waiting))
            self._waiting.append(job)
            self._wakeup.notify()

    def _retry_after(self) -> int:
        """Seconds until a place is likely free: the recent average request time times the requests ahead."""
        average = sum(self._durations) / len(self._durations) if self._durations else 1.0
        return max(1, min(120, math.ceil(average * (len(self._waiting) + 1))))

    @property
    def tokens_generated(self) -> int:
        """Tokens generated since the start, counted live during chat and text completions (the disconnect test
        watches it stop growing)."""
        with self._lock:
            return self._tokens_done + (self._live.new_tokens if self._live is not None else 0)

    @property
    def running(self) -> bool:
        return self._current is not None

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def cancel_all(self) -> None:
        """Stop the running job within one token and drop the waiting ones; refuse new jobs from now on."""
        with self._lock:
            self._closing = True
            for job in [*self._waiting, *([self._current] if self._current else [])]:
                job.cancel.cancel()
            self._wakeup.notify()

    def close(self, timeout: float = 30.0) -> None:
        self.cancel_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("The server's model thread did not stop within %.0f s", timeout)

    # --- the model thread ----------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._closing:
                    self._wakeup.wait()
                if not self._waiting:
                    return  # closing, and nothing left to answer
                job = self._waiting.popleft()
                self._current = job
            started = time.perf_counter()
            try:
                if job.cancel.cancelled:  # the client left (or the server stops) while the job waited
                    job.events.post(Finished("cancelled", 0, 0, 0))
                else:
                    self._execute(job)
            except ApiError as error:
                job.events.post(Failed(error))
            except PenwrightError as error:
                status = 400 if isinstance(error, InputError) else 500
                kind = "invalid_request_error" if status == 400 else "server_error"
                job.events.post(Failed(ApiError(status, str(error), type=kind)))
            except Exception as error:  # a bug or a library failure: the server keeps serving
                log.error("Request failed:\n%s", traceback.format_exc())
                job.events.post(Failed(server_error(f"The model failed on this request: {error}")))
            finally:
                with self._lock:
                    if self._live is not None:
                        self._tokens_done += self._live.new_tokens
                        self._live = None
                    self._current = None
                    self._durations.append(time.perf_counter() - started)
                    self.requests_served += 1

    def _execute(self, job: Job) -> None:
        if job.kind == "infill":
            self._infill(job)
        else:
            self._generate(job)

    def _answer_room(self, job: Job, prompt_tokens: int, what: str, param: str) -> int:
        """max_new_tokens for this job, or 400 when the prompt (and the asked-for answer) do not fit the context."""
        context = self.model.context_length
        if prompt_tokens >= context:
            raise ApiError(
                400,
                f"This model's maximum context length is {context:,} tokens, but the {what} take {prompt_tokens:,} "
                "tokens, leaving no room for an answer. Shorten them.",
                param=param,
                code="context_length_exceeded",
            )
        room = context - prompt_tokens
        if job.max_tokens is None:
            return room if job.default_max_tokens is None else min(job.default_max_tokens, room)
        if job.max_tokens > room:
            raise ApiError(
                400,
                f"This model's maximum context length is {context:,} tokens. However, you requested "
                f"{prompt_tokens + job.max_tokens:,} tokens ({prompt_tokens:,} in the {what}, {job.max_tokens:,} in "
                "the completion). Reduce the length of the prompt or max_tokens.",
                param="max_tokens",
                code="context_length_exceeded",
            )
        return job.max_tokens

    def _generate(self, job: Job) -> None:
        assert job.prompt is not None
        what, param = ("messages", "messages") if job.kind == "chat" else ("prompt", "prompt")
        try:
            prompt_tokens = self.model.count_prompt(job.prompt)
        except PenwrightError as error:  # a chat template that refuses these messages
            raise ApiError(400, str(error), param=param) from None
        if prompt_tokens == 0:
            raise ApiError(400, "The prompt is empty: there is nothing to continue.", param=param)
        settings = replace(job.settings, max_new_tokens=self._answer_room(job, prompt_tokens, what, param))
        job.events.post(Started(prompt_tokens))
        stream = self.model.stream(job.prompt, settings, job.cancel)
        with self._lock:
            self._live = stream.stats
        for piece in stream:
            job.events.post(Text(piece))
        stats = stream.stats
        reason = FINISH_REASONS.get(stats.finish_reason, "stop")
        self.last_finish_reason = reason
        cached = stats.prompt_tokens - stats.prefill_tokens
        job.events.post(Finished(reason, stats.prompt_tokens, stats.new_tokens, cached))

    def _infill(self, job: Job) -> None:
        """Fill in the middle through the app's inline completer; the client's ``stop`` strings cut it too."""
        assert job.infill is not None
        prompt_tokens = self.model.infill_prompt_tokens(job.infill)
        settings = replace(job.settings, max_new_tokens=self._answer_room(job, prompt_tokens, "prompt", "prompt"))
        # The completer's cache of recent answers is keyed by the pane: one "pane" per sampler setting, so a request
        # with another seed or length is never answered from a cached suggestion made with different settings.
        request = replace(job.infill, pane=f"server {settings!r}")
        job.events.post(Started(prompt_tokens))
        seen = ""
        stopped = False

        def on_text(text: str) -> None:
            nonlocal seen, stopped
            seen = text
            if first_stop(text, job.stops) is not None:
                stopped = True
                job.cancel.cancel()  # a stop string: generating on is wasted work

        result = self.model.suggest(request, settings, job.cancel, on_text)
        if result.cancelled and not stopped:
            self.last_finish_reason = "cancelled"
            job.events.post(Finished("cancelled", prompt_tokens, result.new_tokens, result.reused_tokens))
            return
        text = seen if result.cancelled else result.text
        cut_at = first_stop(text, job.stops)
        if cut_at is not None:
            text, stopped = text[:cut_at], True
        if text:
            job.events.post(Text(text))
        new_tokens = self.model.count_tokens(result.text) if result.from_cache else result.new_tokens
        reason = "length" if not stopped and new_tokens >= settings.max_new_tokens else "stop"
        self.last_finish_reason = reason
        with self._lock:
            self._tokens_done += 0 if result.from_cache else result.new_tokens
        job.events.post(Finished(reason, prompt_tokens, new_tokens, result.reused_tokens))


def first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    """Where the first of ``stops`` starts in ``text``, or None."""
    found = [index for stop in stops if (index := text.find(stop)) >= 0]
    return min(found) if found else None
