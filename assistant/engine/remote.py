"""The remote backend: every task and the inline suggestions on any OpenAI-compatible server. No Qt here.

vLLM, TGI, llama.cpp's server, Ollama, LM Studio and ``penwright serve`` all speak OpenAI's HTTP API. A
:class:`RemoteSession` offers the worker and the CLI what :class:`~assistant.engine.session.EngineSession` offers:
``describe``, ``run`` (story, poem, summary in both forms, rewrite, translate, code, chat) and ``suggest``. Tasks
build their prompts exactly as for the local model and run through the same task runner; only the last step, the
text generation, goes over HTTP: chat prompts to ``/chat/completions`` (the server applies its model's chat
template), plain-text prompts to ``/completions``, both streamed as server-sent events.

Inline suggestions use ``/completions`` with ``suffix`` where the server takes it (``penwright serve``, with its own
rulebook), llama.cpp's ``/infill`` where that exists, else the plain prefix; whatever comes back is cut by the same
:mod:`assistant.core.completion_rules` as the local suggestions, and the stream is closed as soon as the rules say
the suggestion is complete.

Failures are sentences that name the URL and what failed (:class:`~assistant.core.errors.ModelError`); every
request has a connect and a read timeout; nothing ever falls back to the local model. Stop closes the stream: a
small watcher shuts the request's socket down when the cancel token is set, so even a read still waiting for the
server's first byte ends at once, and the server sees the client leave and stops generating.

Token counts are estimates (the server's tokenizer is not here): prompts are fitted with a conservative count of
characters per token, and a prompt the server still finds too long comes back as its own error message.
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit, urlunsplit

from assistant.core.completion_rules import Cursor, cut
from assistant.core.errors import InputError, ModelError
from assistant.core.prompts import InlineRequest, Message, Prompt
from assistant.core.settings import SamplerSettings
from assistant.engine.generate import CancelToken, GenerationStats, StopStringFilter, TextStream
from assistant.engine.session import ModelInfo

if TYPE_CHECKING:
    import httpx2

    from assistant.engine.completion import InlineResult
    from assistant.engine.generate import Engine
    from assistant.engine.session import ProgressCallback, SuggestionCallback
    from assistant.engine.tasks import TaskRequest

CONNECT_TIMEOUT_S = 5.0
"""Seconds to open a connection: a server that is down answers at once, a wrong address takes this long."""
READ_TIMEOUT_S = 120.0
"""Seconds the server may stay silent during an answer (a big model's prefill of a long prompt, a queue)."""
LIST_TIMEOUT_S = 10.0
"""Seconds for the model list (Settings, connecting)."""
SUGGEST_TIMEOUT_S = 20.0
"""Seconds an inline suggestion may wait for the server: after that the writer has typed on anyway."""
DEFAULT_CONTEXT = 4096
"""Context assumed when the server does not say (OpenAI's API has no field for it; vLLM and llama.cpp say it)."""
MAX_SERVER_STOPS = 4
"""OpenAI takes at most four stop strings; the rest are applied here."""
SUGGEST_MAX_TOKENS = 48
WATCH_INTERVAL_S = 0.02
"""How often the Stop watcher looks at the cancel token (a Stop takes effect within this)."""

SERVER_KINDS = ("penwright", "vllm", "llama.cpp", "ollama", "openai-compatible")


# --- addresses -------------------------------------------------------------------------------------------------


def normalize_base_url(url: str) -> str:
    """The API's base URL as requests use it: a scheme, no trailing slash, ``/v1`` when no path was given.

    ``localhost:8000`` becomes ``http://localhost:8000/v1``; ``https://host/openai/v1/`` keeps its path.
    """
    text = url.strip()
    if not text:
        raise InputError("Give the server's address, such as http://localhost:8000/v1.")
    if "://" not in text:
        text = f"http://{text}"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"'{url.strip()}' is not a server address; write it as http://HOST:PORT/v1.")
    path = parts.path.rstrip("/") or "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def host_of(base_url: str) -> str:
    """``host:port`` of a base URL, for the status bar."""
    return urlsplit(base_url).netloc or base_url


def server_root(base_url: str) -> str:
    """The server's root (llama.cpp's ``/infill`` and ``/props``, penwright's ``/health`` live there, not under /v1)."""
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")
    path = path[: -len("/v1")] if path.endswith("/v1") else path
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _is_loopback(base_url: str) -> bool:
    host = (urlsplit(base_url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


# --- HTTP ------------------------------------------------------------------------------------------------------


class RemoteHTTPError(ModelError):
    """The server answered with an error status; ``str()`` is the sentence for the user."""

    def __init__(self, message: str, status: int, server_message: str) -> None:
        super().__init__(message)
        self.status = status
        self.server_message = server_message


class RemoteClient:
    """JSON requests and server-sent-event streams to one OpenAI-compatible server, with errors as sentences.

    Connections are not kept alive: each request opens its own, so Stop can shut exactly that one down (and the
    server sees its client leave) without disturbing another request.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str = "",
        read_timeout: float = READ_TIMEOUT_S,
        connect_timeout: float = CONNECT_TIMEOUT_S,
    ) -> None:
        import httpx2

        self.base_url = normalize_base_url(base_url)
        self.root = server_root(self.base_url)
        self.read_timeout = read_timeout
        self.connect_timeout = connect_timeout
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx2.Client(
            headers=headers,
            limits=httpx2.Limits(max_keepalive_connections=0),
            # A proxy from the environment for remote servers (as every HTTP client does), never for this machine.
            trust_env=not _is_loopback(self.base_url),
            follow_redirects=True,
        )

    def close(self) -> None:
        self._http.close()

    def url(self, path: str, root: bool = False) -> str:
        return f"{self.root if root else self.base_url}{path}"

    def _timeout(self, read: float | None) -> httpx2.Timeout:
        import httpx2

        return httpx2.Timeout(read or self.read_timeout, connect=self.connect_timeout)

    def get_json(self, path: str, root: bool = False, timeout: float | None = None) -> Any:
        import httpx2

        url = self.url(path, root)
        what = f"GET {url}"
        try:
            response = self._http.get(url, timeout=self._timeout(timeout))
        except httpx2.TransportError as error:
            raise self._transport_error(error, what, timeout or self.read_timeout) from None
        if response.status_code >= 400:
            raise self._status_error(response.status_code, response.reason_phrase, response.text, what)
        return self._json(response.text, what)

    def stream_events(
        self,
        path: str,
        body: dict[str, Any],
        cancel: CancelToken,
        timeout: float | None = None,
        root: bool = False,
    ) -> Generator[dict[str, Any], None, None]:
        """The JSON of each ``data:`` event of a streamed POST, until ``[DONE]``; ends quietly after Stop."""
        import httpx2

        url = self.url(path, root)
        what = f"POST {url}"
        sockets: list[socket.socket] = []
        done = threading.Event()

        def trace(name: str, info: dict[str, Any]) -> None:
            if name.endswith("connect_tcp.complete"):
                stream = info.get("return_value")
                sock = stream.get_extra_info("socket") if stream is not None else None
                if isinstance(sock, socket.socket):
                    sockets.append(sock)

        watcher = threading.Thread(
            target=_close_on_cancel, args=(cancel, done, sockets), name="penwright-remote-stop", daemon=True
        )
        watcher.start()
        try:
            with self._http.stream(
                "POST", url, json=body, timeout=self._timeout(timeout), extensions={"trace": trace}
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._status_error(response.status_code, response.reason_phrase, response.text, what)
                for line in response.iter_lines():
                    if cancel.cancelled:
                        return
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    event = self._json(data, what)
                    if isinstance(event, dict) and isinstance(event.get("error"), (dict, str)):
                        raise ModelError(f"The server at {self.base_url} stopped with an error: {_error_text(event)}")
                    if isinstance(event, dict):
                        yield event
        except httpx2.TransportError as error:
            if cancel.cancelled:
                return  # Stop shut the socket down: that is the end we asked for
            raise self._transport_error(error, what, timeout or self.read_timeout) from None
        finally:
            done.set()

    # --- errors as sentences -------------------------------------------------------------------------------

    def _json(self, text: str, what: str) -> Any:
        try:
            return json.loads(text)
        except ValueError:
            shown = " ".join(text.split())[:120]
            raise ModelError(
                f"The server at {self.base_url} answered {what} with something that is not JSON ({shown!r}); "
                "is the address that of an OpenAI-compatible API (it usually ends in /v1)?"
            ) from None

    def _transport_error(self, error: Exception, what: str, read_timeout: float) -> ModelError:
        import httpx2

        if isinstance(error, httpx2.ConnectTimeout):
            return ModelError(
                f"The server at {self.base_url} did not accept a connection within {self.connect_timeout:g} s "
                f"({what}). Check the address, and that the server is running."
            )
        if isinstance(error, httpx2.ConnectError):
            reason = _reason(error)
            return ModelError(
                f"Could not connect to the server at {self.base_url}: {reason} ({what}). "
                "Is the server running, and is the address right?"
            )
        if isinstance(error, httpx2.TimeoutException):
            return ModelError(
                f"The server at {self.base_url} did not answer within {read_timeout:g} s ({what}). It may be busy "
                "or still loading its model; try again, or allow more time in Settings (--remote-timeout)."
            )
        return ModelError(f"The connection to the server at {self.base_url} failed during {what}: {_reason(error)}.")

    def _status_error(self, status: int, reason: str, text: str, what: str) -> RemoteHTTPError:
        try:
            message = _error_text(json.loads(text))
        except ValueError:
            message = " ".join(text.split())[:200]
        said = f": {message.rstrip('.')}" if message else ""
        if status in (401, 403):
            sentence = (
                f"The server at {self.base_url} refused the API key ({status} {reason}{said}). "
                "Check the key in Settings, --api-key or PENWRIGHT_API_KEY."
            )
        elif status == 404 and what.endswith(f"{self.base_url}/completions"):
            sentence = (
                f"The server at {self.base_url} does not continue plain text (404 for {what}{said}); stories and "
                "inline suggestions need /v1/completions, which chat-only servers and models lack. Serve a model "
                "that offers it (vLLM, llama.cpp, Ollama and penwright serve do), or use chat."
            )
        elif status == 404:
            sentence = (
                f"The server at {self.base_url} has no {what.split(' ', 1)[-1]} (404{said}). "
                "Check the address (it usually ends in /v1) and the model name."
            )
        elif status == 429:
            sentence = f"The server at {self.base_url} is busy (429{said}). Try again in a moment."
        else:
            sentence = f"The server at {self.base_url} answered {status} {reason} to {what}{said}"
            sentence += "" if sentence.endswith(".") else "."
        return RemoteHTTPError(sentence, status, message)


def _error_text(body: Any) -> str:
    """The message of an OpenAI-shaped error body (or vLLM's / llama.cpp's variants)."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return str(error.get("message") or error.get("detail") or "").strip()
        if isinstance(error, str):
            return error.strip()
        detail = body.get("detail")
        if detail:
            return str(detail).strip()
    return ""


def _reason(error: Exception) -> str:
    """ "connection refused" from "[Errno 111] Connection refused"."""
    text = str(error) or type(error).__name__
    if "] " in text:
        text = text.split("] ", 1)[1]
    return text[:1].lower() + text[1:]


def _close_on_cancel(cancel: CancelToken, done: threading.Event, sockets: list[socket.socket]) -> None:
    """Shut the request's socket down when Stop is pressed: the blocked read ends, the server sees the client go."""
    while not done.wait(WATCH_INTERVAL_S):
        if cancel.cancelled:
            for sock in list(sockets):
                with contextlib.suppress(OSError):  # already closed
                    sock.shutdown(socket.SHUT_RDWR)
            return


# --- the server's models ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteModel:
    id: str
    owned_by: str = ""
    context_length: int | None = None


def _context_of(card: dict[str, Any]) -> int | None:
    """The context length a model card states: vLLM's ``max_model_len``, llama.cpp's ``meta.n_ctx_train``, ..."""
    meta = card.get("meta") if isinstance(card.get("meta"), dict) else {}
    for value in (
        card.get("max_model_len"),
        card.get("context_length"),
        card.get("context_window"),
        card.get("max_context_length"),
        meta.get("n_ctx") if meta else None,
        meta.get("n_ctx_train") if meta else None,
    ):
        if isinstance(value, int) and value > 0:
            return value
    return None


def fetch_models(client: RemoteClient) -> list[RemoteModel]:
    body = client.get_json("/models", timeout=LIST_TIMEOUT_S)
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise ModelError(f"The server at {client.base_url} answered /models without a model list.")
    models = [
        RemoteModel(str(card["id"]), str(card.get("owned_by") or ""), _context_of(card))
        for card in data
        if isinstance(card, dict) and card.get("id")
    ]
    if not models:
        raise ModelError(f"The server at {client.base_url} serves no models (its /models list is empty).")
    return models


def list_models(base_url: str, api_key: str = "", timeout: float = LIST_TIMEOUT_S) -> list[str]:
    """The ids of the models the server offers (``GET /v1/models``); ModelError with a sentence when it cannot."""
    client = RemoteClient(base_url, api_key, read_timeout=timeout)
    try:
        return [model.id for model in fetch_models(client)]
    finally:
        client.close()


# --- generation ------------------------------------------------------------------------------------------------


@dataclass
class _Measure:
    """A PromptMeasure over estimated token counts."""

    engine: RemoteEngine
    limit: int

    def count_prompt(self, prompt: Prompt) -> int:
        return self.engine.count_prompt(prompt)


@dataclass(frozen=True)
class _Source:
    kind: str
    location: str
    gguf_file: None = None


@dataclass(frozen=True)
class _Placement:
    device: str = "remote"
    dtype_name: str = ""


@dataclass(frozen=True)
class _Loaded:
    """What the task runner reads of ``engine.loaded`` (names, statistics, the summary cache's fingerprint)."""

    name: str
    source: _Source
    context_length: int
    load_seconds: float
    weights: str = "remote"
    placement: _Placement = field(default_factory=_Placement)


def estimate_tokens(text: str) -> int:
    """A generous token count without the server's tokenizer: 3 ASCII characters a token, 1 for any other."""
    ascii_chars = sum(1 for char in text if ord(char) < 128)
    return math.ceil(ascii_chars / 3) + (len(text) - ascii_chars)


class RemoteEngine:
    """The part of :class:`~assistant.engine.generate.Engine` the task runner uses, over HTTP.

    ``stream`` sends chat prompts to ``/chat/completions`` and text prompts to ``/completions``. There is no
    chat template here (``has_chat_template`` is False): the server renders its model's own.
    """

    has_chat_template = False
    decode_path = "remote server"
    notes = ""

    def __init__(
        self, client: RemoteClient, model: str, context_length: int, kind: str, connect_seconds: float = 0.0
    ) -> None:
        self.client = client
        self.model = model
        self.kind = kind
        self.context_length = context_length
        self.loaded = _Loaded(
            name=model,
            source=_Source("remote", f"{client.base_url}#{model}"),
            context_length=context_length,
            load_seconds=connect_seconds,
        )
        self._usage_option = True
        """Whether to ask for ``stream_options.include_usage`` (a server that refuses it is asked once only)."""
        self.last_stats: GenerationStats | None = None

    @property
    def name(self) -> str:
        return self.model

    def measure(self, max_new_tokens: int) -> _Measure:
        return _Measure(self, self.context_length - max_new_tokens)

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def count_prompt(self, prompt: Prompt) -> int:
        if prompt.messages is None:
            return estimate_tokens(prompt.text or "") + 1
        return sum(estimate_tokens(message["content"]) + 6 for message in prompt.messages) + 3

    def render_chat(self, messages: Sequence[Message]) -> str:  # only asked for when has_chat_template is True
        raise ModelError("A remote model's chat template is the server's own.")

    def generate(
        self, prompt: Prompt, settings: SamplerSettings | None = None, cancel: CancelToken | None = None
    ) -> str:
        return self.stream(prompt, settings, cancel).text()

    def stream(
        self, prompt: Prompt, settings: SamplerSettings | None = None, cancel: CancelToken | None = None
    ) -> TextStream:
        settings = settings or SamplerSettings()
        try:
            settings.validate()
        except ValueError as error:
            raise InputError(f"Invalid sampler setting: {error}.") from None
        body: dict[str, Any] = {"model": self.model, "stream": True, **sampling_fields(settings)}
        if prompt.messages is not None:
            path = "/chat/completions"
            body["messages"] = [dict(message) for message in prompt.messages]
        else:
            if not (prompt.text or "").strip():
                raise InputError("The prompt is empty: there is nothing to continue.")
            path = "/completions"
            body["prompt"] = prompt.text
        if prompt.stop:
            body["stop"] = list(prompt.stop[:MAX_SERVER_STOPS])
        stats = GenerationStats(
            load_s=self.loaded.load_seconds,
            prompt_tokens=self.count_prompt(prompt),
            weights=self.loaded.weights,
            decoding=self.decode_path,
        )
        stats.prefill_tokens = stats.prompt_tokens
        self.last_stats = stats
        return TextStream(self._pieces(path, body, cancel or CancelToken(), list(prompt.stop), stats), stats)

    def _events(self, path: str, body: dict[str, Any], cancel: CancelToken) -> Generator[dict[str, Any], None, None]:
        """Streamed events, asking for usage counts where the server accepts ``stream_options``."""
        if self._usage_option:
            try:
                yield from self.client.stream_events(path, {**body, "stream_options": {"include_usage": True}}, cancel)
                return
            except RemoteHTTPError as error:
                if error.status not in (400, 422) or "stream_options" not in error.server_message:
                    raise
                self._usage_option = False
        yield from self.client.stream_events(path, body, cancel)

    def _pieces(
        self, path: str, body: dict[str, Any], cancel: CancelToken, stops: list[str], stats: GenerationStats
    ) -> Iterator[str]:
        started = time.perf_counter()
        first_at = 0.0
        chunks = 0
        usage_seen = False
        stop_filter = StopStringFilter(stops)
        finish = "cancelled" if cancel.cancelled else "length"
        events = self._events(path, body, cancel)
        try:
            if cancel.cancelled:
                return
            for event in events:
                usage = event.get("usage")
                if isinstance(usage, dict):
                    usage_seen = True
                    stats.prompt_tokens = int(usage.get("prompt_tokens") or stats.prompt_tokens)
                    stats.new_tokens = int(usage.get("completion_tokens") or 0)
                    details = usage.get("prompt_tokens_details")
                    cached = details.get("cached_tokens") if isinstance(details, dict) else None
                    stats.prefill_tokens = stats.prompt_tokens - int(cached or 0)
                choices = event.get("choices") or []
                if not choices or not isinstance(choices[0], dict):
                    continue
                choice = choices[0]
                delta = choice.get("delta")
                text = (delta.get("content") if isinstance(delta, dict) else choice.get("text")) or ""
                if text:
                    chunks += 1
                    if not first_at:
                        first_at = time.perf_counter()
                        stats.ttft_ms = (first_at - started) * 1000
                    if not usage_seen:
                        stats.new_tokens = chunks
                    piece = stop_filter.push(text)
                    if piece:
                        yield piece
                    if stop_filter.stopped:
                        finish = "stop"
                        return  # closing the generator closes the stream: the server stops too
                reason = choice.get("finish_reason")
                if reason:
                    finish = "length" if reason == "length" else "eos"
                if cancel.cancelled:
                    break
            if cancel.cancelled:
                finish = "cancelled"
                return
            tail = stop_filter.flush()
            if tail:
                yield tail
        finally:
            events.close()  # a stop string or Stop: the stream closes now, and the server stops generating
            ended = time.perf_counter()
            stats.finish_reason = "cancelled" if cancel.cancelled and finish != "stop" else finish
            stats.total_s = ended - started
            if first_at and stats.new_tokens > 1:
                stats.tok_s = (stats.new_tokens - 1) / max(ended - first_at, 1e-9)


def sampling_fields(settings: SamplerSettings) -> dict[str, Any]:
    """The sampler settings OpenAI's API has; top-k, min-p and the repetition penalty are the server's own."""
    fields: dict[str, Any] = {
        "max_tokens": settings.max_new_tokens,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
    }
    if settings.seed is not None:
        fields["seed"] = settings.seed
    return fields


# --- sessions --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteChoice:
    """Which server and model to use; comes from the settings or the command line. The key never shows in a repr."""

    base_url: str
    api_key: str = field(default="", repr=False)
    model: str = ""
    """"" takes the first model the server lists."""
    timeout_s: float = READ_TIMEOUT_S


@dataclass(frozen=True)
class RemoteModelInfo(ModelInfo):
    """A remote model as the status bar shows it: "remote: NAME at HOST"."""

    base_url: str = ""
    host: str = ""
    server: str = ""
    """Which kind of server answered (one of SERVER_KINDS)."""


_NO_REMOTE_VOICES = (
    "Voices are learnt and used on this computer's model; a model on a server has none. "
    "Choose 'On this computer' in Settings to write in a voice."
)


class RemoteSession:
    """A model on an OpenAI-compatible server behind the ModelSession interface (``describe``, ``run``, ``suggest``)."""

    def __init__(self, engine: RemoteEngine, lru_size: int = 64) -> None:
        self.engine = engine
        self._lru: OrderedDict[tuple[str, str, str], str] = OrderedDict()
        self._lru_size = lru_size
        self._suffix_ok = engine.kind != "vllm"  # vLLM refuses ``suffix``; others take it or ignore it

    @property
    def client(self) -> RemoteClient:
        return self.engine.client

    def describe(self) -> RemoteModelInfo:
        client = self.engine.client
        return RemoteModelInfo(
            name=self.engine.model,
            device="remote",
            dtype="",
            context_length=self.engine.context_length,
            load_seconds=self.engine.loaded.load_seconds,
            weights="",
            base_url=client.base_url,
            host=host_of(client.base_url),
            server=self.engine.kind,
        )

    def run(
        self,
        request: TaskRequest,
        settings: SamplerSettings,
        cancel: CancelToken,
        progress: ProgressCallback | None = None,
    ) -> TextStream:
        from assistant.engine.tasks import run_task

        # The task runner uses only the Engine members RemoteEngine has (measure, stream, count_tokens, loaded ...).
        return run_task(cast("Engine", self.engine), request, settings, cancel, progress)

    def close(self) -> None:
        self.engine.client.close()

    def set_voice(self, name: str) -> RemoteModelInfo:
        """Voices are learnt on this computer's model; a server's model has none (see ModelSession.set_voice)."""
        if name:
            raise InputError(_NO_REMOTE_VOICES)
        return self.describe()

    def learn_voice(self, *_args: Any, **_kwargs: Any) -> Any:
        raise InputError(_NO_REMOTE_VOICES)

    # --- inline suggestions --------------------------------------------------------------------------------

    def suggest(
        self, request: InlineRequest, cancel: CancelToken, on_text: SuggestionCallback | None = None
    ) -> InlineResult:
        from assistant.engine.completion import InlineResult

        started = time.perf_counter()
        key = (request.mode, request.prefix[-2000:], request.suffix[:500])
        if key in self._lru:
            self._lru.move_to_end(key)
            hit = self._lru[key]
            if on_text is not None and hit:
                on_text(hit)
            return InlineResult(hit, from_cache=True, total_ms=(time.perf_counter() - started) * 1000)
        result = InlineResult("")
        try:
            self._suggest(request, cancel, on_text, result, started)
        except RemoteHTTPError as error:
            if not (self._suffix_ok and error.status in (400, 422) and "suffix" in error.server_message.lower()):
                raise
            self._suffix_ok = False  # this server refuses ``suffix``: the plain prefix from now on
            result = InlineResult("")
            self._suggest(request, cancel, on_text, result, started)
        result.total_ms = (time.perf_counter() - started) * 1000
        if not result.cancelled:
            self._lru[key] = result.text
            while len(self._lru) > self._lru_size:
                self._lru.popitem(last=False)
        return result

    def suggestion_route(self, request: InlineRequest) -> str:
        """How this request goes to the server: "suffix", "infill" (llama.cpp) or "prefix"."""
        if self.engine.kind == "penwright":
            return "suffix"  # penwright serve fills in the middle with the app's own completer and rulebook
        if request.mode != "code" or not request.suffix.strip():
            return "prefix"
        if self.engine.kind == "llama.cpp":
            return "infill"
        return "suffix" if self._suffix_ok else "prefix"

    def _suggest(
        self,
        request: InlineRequest,
        cancel: CancelToken,
        on_text: SuggestionCallback | None,
        result: InlineResult,
        started: float,
    ) -> None:
        from assistant.engine.completion import _split_typed_space, _visible_suggestion

        cursor = Cursor.from_text(request.prefix, request.suffix)
        route = self.suggestion_route(request)
        prefix, typed_space = _split_typed_space(request.prefix)
        fields: dict[str, Any] = {"max_tokens": SUGGEST_MAX_TOKENS, "temperature": 0, "stream": True}
        if route == "infill":
            path, root = "/infill", True
            body: dict[str, Any] = {
                "input_prefix": prefix,
                "input_suffix": request.suffix,
                "n_predict": SUGGEST_MAX_TOKENS,
                "temperature": 0,
                "stream": True,
            }
        else:
            path, root = "/completions", False
            body = {"model": self.engine.model, "prompt": prefix, **fields}
            if route == "suffix":
                body["suffix"] = request.suffix
            if self.engine.kind == "penwright":  # its own rulebook and prompt: the raw text and the pane's mode
                body.update(prompt=request.prefix, mode=request.mode)
                typed_space = ""
        result.prompt_tokens = estimate_tokens(str(body.get("prompt") or body.get("input_prefix") or ""))
        result.details = {"route": route}
        raw = ""
        shown = ""
        text = ""
        stopped = False
        events = self.client.stream_events(path, body, cancel, timeout=SUGGEST_TIMEOUT_S, root=root)
        try:
            for event in events:
                piece = _suggestion_piece(event)
                if not piece:
                    continue
                if not result.ttft_ms:
                    result.ttft_ms = (time.perf_counter() - started) * 1000
                result.new_tokens += 1
                raw += piece
                text = _visible_suggestion(raw, typed_space, cursor.line_prefix)
                verdict = cut(text, cursor, request.mode)
                if verdict.stop:
                    text, stopped = verdict.text, True
                    break  # the rules are satisfied: close the stream, the server stops generating
                if on_text is not None and verdict.text.strip() and verdict.text != shown:
                    if not result.first_text_ms:
                        result.first_text_ms = (time.perf_counter() - started) * 1000
                    shown = verdict.text
                    on_text(shown)
        finally:
            events.close()
        if cancel.cancelled:
            result.cancelled = True
            return
        result.text = text if stopped else cut(text, cursor, request.mode, final=True).text
        if on_text is not None and result.text != shown:
            on_text(result.text)
        if result.text and not result.first_text_ms:
            result.first_text_ms = (time.perf_counter() - started) * 1000


def _suggestion_piece(event: dict[str, Any]) -> str:
    """The text of one streamed event: OpenAI's ``choices[0].text`` or llama.cpp's ``content``."""
    choices = event.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return str(choices[0].get("text") or "")
    content = event.get("content")
    return content if isinstance(content, str) else ""


def _server_kind(client: RemoteClient, model: RemoteModel) -> str:
    """Which server this is, from the model card's ``owned_by``, else by asking llama.cpp's ``/props``."""
    owner = model.owned_by.lower()
    if owner == "penwright":
        return "penwright"
    if owner == "vllm":
        return "vllm"
    if owner in ("llamacpp", "llama.cpp"):
        return "llama.cpp"
    if owner in ("library", "ollama"):
        return "ollama"
    try:
        props = client.get_json("/props", root=True, timeout=LIST_TIMEOUT_S)
    except ModelError:
        return "openai-compatible"
    return "llama.cpp" if isinstance(props, dict) and "default_generation_settings" in props else "openai-compatible"


def _context_from_server(client: RemoteClient, model: RemoteModel, kind: str) -> int | None:
    if model.context_length:
        return model.context_length
    try:
        if kind == "penwright":
            health = client.get_json("/health", root=True, timeout=LIST_TIMEOUT_S)
            value = health.get("context_length") if isinstance(health, dict) else None
        elif kind == "llama.cpp":
            props = client.get_json("/props", root=True, timeout=LIST_TIMEOUT_S)
            settings = props.get("default_generation_settings") if isinstance(props, dict) else None
            value = settings.get("n_ctx") if isinstance(settings, dict) else None
        else:
            return None
    except ModelError:
        return None
    return value if isinstance(value, int) and value > 0 else None


def open_remote_session(choice: RemoteChoice, progress: ProgressCallback | None = None) -> RemoteSession:
    """Connect: list the server's models, pick the chosen one (or the first), learn what the server is.

    Raises ModelError with a sentence (which URL, what failed) when the server cannot be used; never falls back to
    the local model.
    """
    report: Callable[[str, float | None], None] = progress or (lambda _stage, _fraction: None)
    started = time.perf_counter()
    client = RemoteClient(choice.base_url, choice.api_key, read_timeout=choice.timeout_s)
    try:
        report(f"Connecting to {host_of(client.base_url)}", None)
        models = fetch_models(client)
        if choice.model:
            chosen = next((model for model in models if model.id == choice.model), None)
            if chosen is None:
                names = ", ".join(model.id for model in models[:8])
                raise ModelError(f"The server at {client.base_url} has no model '{choice.model}'; it offers: {names}.")
        else:
            chosen = models[0]
        kind = _server_kind(client, chosen)
        context = _context_from_server(client, chosen, kind) or DEFAULT_CONTEXT
    except BaseException:
        client.close()
        raise
    report(f"Connected to {host_of(client.base_url)}: {chosen.id}", 1.0)
    engine = RemoteEngine(client, chosen.id, context, kind, time.perf_counter() - started)
    return RemoteSession(engine)
