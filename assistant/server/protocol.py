"""The OpenAI HTTP API as ``penwright serve`` speaks it: request models, errors and response shapes. No I/O here.

Editors and SDKs are written against OpenAI's documented shapes, so the server returns exactly those: errors as
``{"error": {"message", "type", "param", "code"}}`` with OpenAI's status codes, chunks as ``chat.completion.chunk``
and ``text_completion`` objects, ``usage`` with ``prompt_tokens_details.cached_tokens`` (the prompt tokens the KV
cache of the previous request already held). Unknown request fields are ignored, as vLLM and llama.cpp do, so a
client that sends a newer field still works; fields that would change the answer in a way this server cannot honour
(``n`` > 1, tools, logprobs, a JSON schema) are refused with 400 rather than silently dropped.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from assistant.core.prompts import Message

# --- errors ----------------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error the client gets in OpenAI's JSON shape, with its HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def server_error(message: str) -> ApiError:
    return ApiError(500, message, type="server_error", code="internal_error")


def validation_error(error: ValidationError) -> ApiError:
    """The first problem pydantic found, said the way OpenAI says it, with the field as ``param``."""
    first = error.errors()[0]
    if first["type"] == "json_invalid":
        reason = first.get("ctx", {}).get("error", first["msg"])
        return ApiError(400, f"We could not parse the JSON body of your request ({reason}).", code="invalid_json")
    location = first["loc"]
    param = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in location).lstrip(".")
    if first["type"] == "model_type" and not location:
        return ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    if first["type"] == "missing":
        return ApiError(400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
    value = first.get("input")
    shown = json.dumps(value)[:80] if _jsonable(value) else type(value).__name__
    message = f"Invalid value for '{param}': {first['msg']} (got {shown})."
    return ApiError(400, message, param=param, code="invalid_value")


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


# --- requests --------------------------------------------------------------------------------------------------


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StreamOptions(_Request):
    include_usage: bool = False


class SamplingFields(_Request):
    """What both endpoints share. ``top_k``, ``min_p`` and ``repetition_penalty`` are vLLM's and llama.cpp's
    extensions (pass them in ``extra_body`` with the openai client); omitted fields take Penwright's defaults."""

    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    n: int = Field(default=1, ge=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    """Accepted for compatibility; it has no effect (use ``repetition_penalty``)."""
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    """Accepted for compatibility; it has no effect (use ``repetition_penalty``)."""
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0, lt=1)
    repetition_penalty: float | None = Field(default=None, gt=0)

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        stops = [self.stop] if isinstance(self.stop, str) else self.stop
        return tuple(stop for stop in stops if stop)

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def sampler_changes(self) -> dict[str, Any]:
        """The SamplerSettings fields this request sets (``None`` keeps the default)."""
        seed = None if self.seed is None else self.seed % 2**64  # torch seeds are unsigned 64-bit
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "min_p": self.min_p,
            "repetition_penalty": self.repetition_penalty,
            "seed": seed,
        }

    def refuse_unsupported(self) -> None:
        """400 for what would change the answer in a way this server cannot do."""
        if self.n != 1:
            raise ApiError(400, "Only n=1 is supported: this server writes one answer per request.", param="n")
        if self.logit_bias:
            raise ApiError(400, "logit_bias is not supported by this server.", param="logit_bias")


class ContentPart(_Request):
    type: str
    text: str | None = None


class ChatMessage(_Request):
    role: str
    content: str | list[ContentPart] | None = None
    tool_calls: list[Any] | None = None


CHAT_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    response_format: dict[str, Any] | None = None

    def answer_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        if self.logprobs:
            raise ApiError(400, "logprobs are not supported by this server.", param="logprobs")
        if self.tools or self.functions:
            param = "tools" if self.tools else "functions"
            raise ApiError(400, "Tools and function calls are not supported by this server.", param=param)
        if self.response_format and self.response_format.get("type", "text") != "text":
            raise ApiError(
                400, 'Only response_format {"type": "text"} is supported by this server.', param="response_format"
            )

    def engine_messages(self) -> tuple[Message, ...]:
        """The conversation as the engine's chat template takes it: roles and plain text."""
        messages: list[Message] = []
        for index, message in enumerate(self.messages):
            role = CHAT_ROLES.get(message.role)
            if role is None:
                raise ApiError(
                    400,
                    f"Unsupported role '{message.role}': use system, developer, user or assistant.",
                    param=f"messages[{index}].role",
                )
            if message.tool_calls:
                raise ApiError(400, "Tool calls are not supported by this server.", param=f"messages[{index}]")
            messages.append({"role": role, "content": _text_of(message.content, index)})
        return tuple(messages)


def _text_of(content: str | list[ContentPart] | None, index: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    texts: list[str] = []
    for part_index, part in enumerate(content):
        if part.type != "text" or part.text is None:
            raise ApiError(
                400,
                f"Only text content is supported; part {part_index} of message {index} is '{part.type}'.",
                param=f"messages[{index}].content[{part_index}]",
            )
        texts.append(part.text)
    return "".join(texts)


class CompletionRequest(SamplingFields):
    prompt: str | list[str]
    suffix: str | None = None
    mode: Literal["code", "prose"] = "code"
    """Penwright's extension: which rulebook ends a fill-in-the-middle answer (the code pane's or the editor's)."""
    echo: bool = False
    best_of: int | None = None
    logprobs: int | None = None

    def prompt_text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise ApiError(400, "Give one prompt per request (a string, or a list of one string).", param="prompt")
        return self.prompt[0]

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        if self.echo:
            raise ApiError(400, "echo is not supported by this server.", param="echo")
        if self.best_of not in (None, 1):
            raise ApiError(400, "Only best_of=1 is supported by this server.", param="best_of")
        if self.logprobs:
            raise ApiError(400, "logprobs are not supported by this server.", param="logprobs")


# Fill-in-the-middle prompts as editors lay them out when they cannot send ``suffix`` (Continue's templates):
# the sentinels written as text, prefix-suffix-middle. The server answers them through the inline completer, which
# uses the model's own FIM tokens where it has them and the app's rulebook for where the answer ends.
FIM_TEXT_FORMATS = (
    ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),
)


def split_fim_prompt(prompt: str) -> tuple[str, str] | None:
    """(prefix, suffix) when ``prompt`` is a FIM prompt written out as text, else None."""
    for begin, hole, end in FIM_TEXT_FORMATS:
        if prompt.startswith(begin) and prompt.endswith(end) and prompt.count(hole) == 1:
            prefix, suffix = prompt[len(begin) : -len(end)].split(hole)
            return prefix, suffix
    return None


# --- responses -------------------------------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    }


def model_card(model_id: str, created: int) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "penwright"}


class ResponseShape:
    """One answer's id, timestamps and model, and the JSON objects OpenAI's clients expect for it."""

    def __init__(self, chat: bool, model: str) -> None:
        self.chat = chat
        self.model = model
        self.id = new_id("chatcmpl" if chat else "cmpl")
        self.created = int(time.time())

    def _envelope(self, choices: list[dict[str, Any]], chunk: bool) -> dict[str, Any]:
        kind = ("chat.completion.chunk" if chunk else "chat.completion") if self.chat else "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model, "choices": choices}

    def whole(self, text: str, finish_reason: str, usage_json: dict[str, Any]) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": finish_reason}
        if self.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return {**self._envelope([choice], chunk=False), "usage": usage_json}

    def chunk(self, text: str | None = None, finish_reason: str | None = None, role: bool = False) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": finish_reason}
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant"} if role else {}
            if text is not None:
                delta["content"] = text
            choice["delta"] = delta
        else:
            choice["text"] = text or ""
        return self._envelope([choice], chunk=True)

    def usage_chunk(self, usage_json: dict[str, Any]) -> dict[str, Any]:
        """OpenAI's last chunk under ``stream_options.include_usage``: no choices, the request's usage."""
        return {**self._envelope([], chunk=True), "usage": usage_json}


def sse(data: dict[str, Any] | str) -> bytes:
    """One server-sent event: ``data: <json>`` and a blank line."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()


SSE_DONE = sse("[DONE]")
