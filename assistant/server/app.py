"""The HTTP face of the engine: an ASGI app (Starlette) that uvicorn serves, as vLLM and llama-cpp-python do.

Request handlers run on uvicorn's event loop and never touch the model: they validate, hand a job to the
:class:`ModelWorker` and turn its events into OpenAI's JSON or server-sent events. The first event decides the
status: a prompt that does not fit the context is a 400 even for ``stream: true``, because the worker says so
before any text is written. A client that goes away sets the job's cancel token (Starlette cancels a stream whose
client disconnected; a watcher does the same for a request still waiting in the queue or not streaming).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from assistant.core.prompts import InlineRequest, Prompt
from assistant.core.settings import SamplerSettings
from assistant.engine.completion import INLINE_SETTINGS
from assistant.server.protocol import (
    SSE_DONE,
    ApiError,
    ChatCompletionRequest,
    CompletionRequest,
    ResponseShape,
    SamplingFields,
    model_card,
    server_error,
    split_fim_prompt,
    sse,
    usage,
    validation_error,
)
from assistant.server.worker import Failed, Finished, Job, JobEvents, ModelWorker, Started, Text

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024 * 1024
"""Far more than any prompt that fits a context window; a larger body is refused before it is read."""
COMPLETION_MAX_TOKENS = 16
"""OpenAI's default ``max_tokens`` for /v1/completions; chat answers may take the rest of the context."""


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


class ApiKeyMiddleware:
    """Every ``/v1`` request must carry ``Authorization: Bearer KEY`` (CORS preflights excepted); /health is open."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self._key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1") and scope["method"] != "OPTIONS":
            scheme, _, token = Headers(scope=scope).get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                error = ApiError(
                    401,
                    "You didn't provide an API key. Send it in an Authorization header: 'Bearer YOUR_KEY'.",
                    code="missing_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            elif not hmac.compare_digest(token.strip().encode(), self._key):
                error = ApiError(
                    401,
                    "Incorrect API key provided.",  # never echoed: it may be someone's real key
                    code="invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            else:
                await self.app(scope, receive, send)
                return
            await error_response(error)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(worker: ModelWorker, api_key: str | None = None, cors_origins: Sequence[str] = ()) -> Starlette:
    """The API over ``worker``'s model. ``api_key`` None: no key needed (loopback only; the CLI enforces that)."""
    model = worker.model
    created = int(time.time())

    async def health(_request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "model": model.id,
                "context_length": model.context_length,
                "running": worker.running,
                "waiting": worker.waiting,
                "max_waiting": worker.max_waiting,
                "requests_served": worker.requests_served,
                "tokens_generated": worker.tokens_generated,
                "last_finish_reason": worker.last_finish_reason,
            }
        )

    async def list_models(_request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [model_card(model.id, created)]})

    async def get_model(request: Request) -> Response:
        check_model(request.path_params["model_id"])
        return JSONResponse(model_card(model.id, created))

    def check_model(name: str) -> None:
        if name != model.id:
            raise ApiError(
                404,
                f"The model '{name}' does not exist; this server serves '{model.id}'.",
                param="model",
                code="model_not_found",
            )

    def check_common(body: SamplingFields, answer_limit: int | None) -> None:
        check_model(body.model)
        body.refuse_unsupported()
        if answer_limit is not None and answer_limit > model.context_length:
            raise ApiError(
                400,
                f"max_tokens is too large: {answer_limit:,}. This model's maximum context length is "
                f"{model.context_length:,} tokens (prompt and answer together).",
                param="max_tokens",
                code="invalid_value",
            )

    async def chat_completions(request: Request) -> Response:
        body = ChatCompletionRequest.model_validate_json(await read_body(request))
        limit = body.answer_limit()
        check_common(body, limit)
        prompt = Prompt(messages=body.engine_messages(), stop=body.stops())
        settings = SamplerSettings().with_changes(**body.sampler_changes())
        events = JobEvents(asyncio.get_running_loop())
        job = Job("chat", settings, limit, events, prompt=prompt)
        return await answer(request, job, body, ResponseShape(chat=True, model=model.id))

    async def completions(request: Request) -> Response:
        body = CompletionRequest.model_validate_json(await read_body(request))
        check_common(body, body.max_tokens)
        text = body.prompt_text()
        events = JobEvents(asyncio.get_running_loop())
        fim = split_fim_prompt(text) if body.suffix is None else (text, body.suffix)
        if fim is not None:
            # The app's inline suggestion: same prompt builder, FIM tokens and rulebook; its greedy defaults.
            settings = INLINE_SETTINGS.with_changes(**body.sampler_changes())
            infill = InlineRequest(mode=body.mode, prefix=fim[0], suffix=fim[1], pane="server")
            job = Job(
                "infill",
                settings,
                body.max_tokens,
                events,
                infill=infill,
                stops=body.stops(),
                default_max_tokens=INLINE_SETTINGS.max_new_tokens,
            )
        else:
            settings = SamplerSettings().with_changes(**body.sampler_changes())
            prompt = Prompt(text=text, stop=body.stops())
            job = Job(
                "text", settings, body.max_tokens, events, prompt=prompt, default_max_tokens=COMPLETION_MAX_TOKENS
            )
        return await answer(request, job, body, ResponseShape(chat=False, model=model.id))

    async def answer(request: Request, job: Job, body: SamplingFields, shape: ResponseShape) -> Response:
        worker.submit(job)
        watcher: asyncio.Task[None] | None = asyncio.create_task(cancel_on_disconnect(request, job.events))
        try:
            first = await job.events.queue.get()
            if isinstance(first, Failed):
                raise first.error
            if isinstance(first, Finished):  # cancelled while it waited: the client has gone
                raise ApiError(499, "The request was cancelled.", type="cancelled")
            assert isinstance(first, Started)
            if body.stream:
                stream = stream_events(job.events, shape, body.include_usage(), watcher)
                watcher = None  # the stream owns it now
                return StreamingResponse(
                    stream,
                    media_type="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                )
            return await whole_answer(job.events, shape)
        except asyncio.CancelledError:  # the server cancelled this handler: nobody will read the answer
            job.events.cancel.cancel()
            raise
        finally:
            if watcher is not None:
                watcher.cancel()

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
    ]
    middleware: list[Middleware] = []
    if cors_origins:  # off unless asked: a web page must not reach a local model by default
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors_origins),
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["Authorization", "Content-Type"],
                max_age=600,
            )
        )
    if api_key:
        middleware.append(Middleware(ApiKeyMiddleware, api_key=api_key))
    exception_handlers: dict[Any, Any] = {
        ApiError: lambda _request, error: error_response(error),
        ValidationError: lambda _request, error: error_response(validation_error(error)),
        HTTPException: http_error,
        Exception: unexpected_error,
    }
    return Starlette(routes=routes, middleware=middleware, exception_handlers=exception_handlers)


async def read_body(request: Request) -> bytes:
    """The request body, refused (413) past MAX_BODY_BYTES before all of it is read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, f"The request body is larger than {MAX_BODY_BYTES // 2**20} MB.", code="body_too_large")
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"The request body is larger than {MAX_BODY_BYTES // 2**20} MB.", code="body_too_large")
        parts.append(part)
    return b"".join(parts)


async def cancel_on_disconnect(request: Request, events: JobEvents) -> None:
    """Set the job's cancel token when the client disconnects (the body has been read; only a disconnect follows)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            events.cancel.cancel()
            return


async def whole_answer(events: JobEvents, shape: ResponseShape) -> Response:
    parts: list[str] = []
    while True:
        event = await events.queue.get()
        if isinstance(event, Text):
            parts.append(event.text)
        elif isinstance(event, Failed):
            raise event.error
        elif isinstance(event, Finished):
            if event.reason == "cancelled":
                raise ApiError(503, "The server stopped this request (it is shutting down).", type="server_error")
            used = usage(event.prompt_tokens, event.completion_tokens, event.cached_tokens)
            return JSONResponse(shape.whole("".join(parts), event.reason, used))


async def stream_events(
    events: JobEvents, shape: ResponseShape, include_usage: bool, watcher: asyncio.Task[None] | None
) -> AsyncIterator[bytes]:
    """Server-sent events: a role chunk, text chunks, the finishing chunk, usage when asked, ``[DONE]``.

    Events that arrived together are written together, so a slow reader costs one write per batch, not per token.
    """
    finished = False
    try:
        first = shape.chunk(text="", role=True) if shape.chat else None
        if first is not None:
            yield sse(with_usage_field(first, include_usage))
        while not finished:
            batch = [await events.queue.get(), *events.drain()]
            out: list[bytes] = []
            for event in batch:
                if isinstance(event, Text):
                    out.append(sse(with_usage_field(shape.chunk(text=event.text), include_usage)))
                elif isinstance(event, Failed):
                    out += [sse(event.error.body()), SSE_DONE]
                    finished = True
                    break
                elif isinstance(event, Finished):
                    if event.reason == "cancelled":
                        error = ApiError(503, "The server stopped this request (it is shutting down).")
                        out += [sse(error.body()), SSE_DONE]
                    else:
                        out.append(sse(with_usage_field(shape.chunk(finish_reason=event.reason), include_usage)))
                        if include_usage:
                            used = usage(event.prompt_tokens, event.completion_tokens, event.cached_tokens)
                            out.append(sse(shape.usage_chunk(used)))
                        out.append(SSE_DONE)
                    finished = True
                    break
            if out:
                yield b"".join(out)
    finally:
        if not finished:  # the client went away (Starlette cancelled this stream): stop generating
            events.cancel.cancel()
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


def with_usage_field(chunk: dict[str, Any], include_usage: bool) -> dict[str, Any]:
    """Under ``include_usage`` OpenAI sends ``"usage": null`` in every chunk but the last."""
    return {**chunk, "usage": None} if include_usage else chunk


async def http_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    if error.status_code == 404:
        api_error = ApiError(404, "Unknown URL: this server answers /v1/models, /v1/chat/completions, "
                             "/v1/completions and /health.", code="unknown_url")  # fmt: skip
    elif error.status_code == 405:
        api_error = ApiError(405, "Method not allowed for this URL.", code="method_not_allowed")
    else:
        api_error = ApiError(error.status_code, str(error.detail))
    return error_response(api_error)


async def unexpected_error(_request: Request, error: Exception) -> Response:
    log.error("Unexpected error in a request handler", exc_info=error)
    return error_response(server_error(f"The server failed on this request: {error}"))
