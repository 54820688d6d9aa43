"""A model-free stand-in for the server's plumbing tests, and small HTTP helpers that speak raw HTTP.

The fake counts one token per word, writes "w0 w1 w2 ..." and can be held between tokens (``hold``), so tests can
fill the queue or disconnect mid-answer deterministically. Every feature is also tested on the real model.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from assistant.core.prompts import InlineRequest, Prompt
from assistant.core.settings import SamplerSettings
from assistant.engine.completion import InlineResult
from assistant.engine.generate import CancelToken, GenerationStats, StopStringFilter, TextStream


@dataclass
class FakeModel:
    id: str = "fake-model"
    context_length: int = 64
    hold: threading.Event = field(default_factory=threading.Event)
    """Set: every token waits until ``release`` is set (or the job is cancelled)."""
    release: threading.Event = field(default_factory=threading.Event)
    seconds_per_token: float = 0.0
    """Time each token "takes" once released, so a client can leave mid-answer."""
    token_started: threading.Event = field(default_factory=threading.Event)
    """Set after each token is made (tests wait on it instead of sleeping)."""
    cancelled_jobs: int = 0
    infill_requests: list[InlineRequest] = field(default_factory=list)
    prompts: list[Prompt] = field(default_factory=list)
    settings_seen: list[SamplerSettings] = field(default_factory=list)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def count_prompt(self, prompt: Prompt) -> int:
        if prompt.messages is not None:
            return sum(self.count_tokens(message["content"]) + 2 for message in prompt.messages)
        return self.count_tokens(prompt.text or "")

    def stream(self, prompt: Prompt, settings: SamplerSettings, cancel: CancelToken) -> TextStream:
        self.prompts.append(prompt)
        self.settings_seen.append(settings)
        stats = GenerationStats(prompt_tokens=self.count_prompt(prompt), prefill_tokens=self.count_prompt(prompt))

        def pieces() -> Iterator[str]:
            stops = StopStringFilter(prompt.stop)
            stats.finish_reason = "length"
            for index in range(settings.max_new_tokens):
                while self.hold.is_set() and not self.release.is_set() and not cancel.cancelled:
                    self.release.wait(0.01)
                cancel_seen = cancel.cancelled or cancelled_within(self.seconds_per_token, cancel)
                if cancel_seen:
                    stats.finish_reason = "cancelled"
                    self.cancelled_jobs += 1
                    return
                stats.new_tokens = index + 1
                self.token_started.set()
                piece = stops.push(f"w{index} ")
                if piece:
                    yield piece
                if stops.stopped:
                    stats.finish_reason = "stop"
                    return
            tail = stops.flush()
            if tail:
                yield tail

        return TextStream(pieces(), stats)

    def infill_prompt_tokens(self, request: InlineRequest) -> int:
        return self.count_tokens(request.prefix) + self.count_tokens(request.suffix) + 3

    def suggest(
        self, request: InlineRequest, settings: SamplerSettings, cancel: CancelToken, on_text: Any
    ) -> InlineResult:
        self.infill_requests.append(request)
        self.settings_seen.append(settings)
        text = "filled in;\nsecond line"
        on_text(text)
        if cancel.cancelled:
            return InlineResult("", new_tokens=4, cancelled=True)
        return InlineResult(text, new_tokens=4, prompt_tokens=self.infill_prompt_tokens(request))


def cancelled_within(seconds: float, cancel: CancelToken) -> bool:
    """Spend ``seconds`` as a model step would, noticing a cancel as soon as it comes."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cancel.cancelled:
            return True
        time.sleep(0.002)
    return cancel.cancelled


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    url: str, method: str, path: str, body: bytes | dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> Reply:
    """One raw HTTP request (the openai client would refuse to send the malformed ones)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    sent = {"Content-Type": "application/json", **(headers or {})}
    try:
        connection.request(method, parts.path.removesuffix("/v1") + path, body=data, headers=sent)
        response = connection.getresponse()
        return Reply(response.status, {key.lower(): value for key, value in response.getheaders()}, response.read())
    finally:
        connection.close()


def sse_events(body: bytes) -> list[str]:
    """The ``data:`` payloads of a server-sent event stream, in order."""
    return [line[len("data: ") :] for line in body.decode().split("\n") if line.startswith("data: ")]
