"""Running a task request on the engine: the prompt builders of ``core.prompts`` plus long-text summaries."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

from assistant.core.context import split_into_chunks
from assistant.core.prompts import (
    ChatRequest,
    CodeRequest,
    PoemRequest,
    Prompt,
    RewriteRequest,
    StoryRequest,
    SummaryRequest,
    TranslateRequest,
    build_chat,
    build_code,
    build_poem,
    build_rewrite,
    build_story,
    build_summary,
    build_summary_combine,
    build_translate,
    summary_room,
)
from assistant.core.settings import SamplerSettings
from assistant.engine.generate import CancelToken, Engine, GenerationStats, TextStream

TaskRequest = (
    StoryRequest | PoemRequest | SummaryRequest | RewriteRequest | TranslateRequest | CodeRequest | ChatRequest
)
SummaryProgress = Callable[[str, float | None], None]


def build_prompt(engine: Engine, request: TaskRequest, settings: SamplerSettings) -> Prompt:
    """The fitted prompt for any single-pass task."""
    measure = engine.measure(settings.max_new_tokens)
    if isinstance(request, StoryRequest):
        return build_story(request, measure)
    if isinstance(request, PoemRequest):
        return build_poem(request, measure)
    if isinstance(request, SummaryRequest):
        return build_summary(request.text, measure)
    if isinstance(request, RewriteRequest):
        return build_rewrite(request, measure)
    if isinstance(request, TranslateRequest):
        return build_translate(request, measure)
    if isinstance(request, CodeRequest):
        return build_code(request, measure)
    if isinstance(request, ChatRequest):
        return build_chat(request, measure)
    raise TypeError(f"unknown task request {type(request).__name__}")


def run_task(
    engine: Engine,
    request: TaskRequest,
    settings: SamplerSettings,
    cancel: CancelToken | None = None,
    progress: SummaryProgress | None = None,
) -> TextStream:
    """Stream the answer to a task; a long summary reports its parts through ``progress`` first."""
    if isinstance(request, SummaryRequest):
        return summarize(engine, request, settings, cancel or CancelToken(), progress)
    return engine.stream(build_prompt(engine, request, settings), settings, cancel)


def summarize(
    engine: Engine,
    request: SummaryRequest,
    settings: SamplerSettings,
    cancel: CancelToken,
    progress: SummaryProgress | None = None,
) -> TextStream:
    """Map-reduce summary: split into parts that fit, summarize each, then summarize the summaries."""
    build_summary(request.text[:200], engine.measure(settings.max_new_tokens))  # fails early on empty input
    report = progress or (lambda _message, _fraction: None)
    # One record for all the model calls: what describes the engine is copied, the counters are summed (_add).
    stats = GenerationStats(
        load_s=engine.loaded.load_seconds,
        weights=engine.loaded.weights,
        decoding=engine.decode_path,
        notes=engine.notes,
    )
    part_settings = replace(settings, max_new_tokens=min(settings.max_new_tokens, request.part_summary_tokens))
    room = min(summary_room(engine.measure(part_settings.max_new_tokens)), request.chunk_tokens)

    def pieces() -> Iterator[str]:
        text = request.text
        round_number = 0
        while engine.count_tokens(text) > room:
            round_number += 1
            chunks = split_into_chunks(text, room, engine.count_tokens)
            summaries: list[str] = []
            for index, chunk in enumerate(chunks, 1):
                report(f"Summarizing part {index} of {len(chunks)}", (index - 1) / len(chunks))
                stream = engine.stream(
                    build_summary(chunk, engine.measure(part_settings.max_new_tokens)), part_settings, cancel
                )
                summaries.append(stream.text().strip())
                _add(stats, stream.stats)
                if cancel.cancelled:
                    stats.finish_reason = "cancelled"
                    return
            report("Combining the summaries", 1.0)
            final_measure = engine.measure(settings.max_new_tokens)
            combined = (
                build_summary_combine(summaries, final_measure) if _fits_combined(engine, summaries, settings) else None
            )
            if combined is not None:
                yield from _stream_into(engine.stream(combined, settings, cancel), stats)
                return
            text = "\n\n".join(summaries)  # too many parts for one prompt: summarize the summaries again
            if round_number > 8:
                break
        yield from _stream_into(
            engine.stream(build_summary(text, engine.measure(settings.max_new_tokens)), settings, cancel),
            stats,
        )

    return TextStream(pieces(), stats)


def _fits_combined(engine: Engine, summaries: list[str], settings: SamplerSettings) -> bool:
    measure = engine.measure(settings.max_new_tokens)
    try:
        prompt = build_summary_combine(summaries, measure)
    except Exception:
        return False
    return measure.count_prompt(prompt) <= measure.limit


def _stream_into(stream: TextStream, stats: GenerationStats) -> Iterator[str]:
    first = True
    for piece in stream:
        if first and not stats.ttft_ms:
            stats.ttft_ms = stream.stats.ttft_ms
        first = False
        yield piece
    _add(stats, stream.stats)
    stats.tok_s = stream.stats.tok_s
    stats.finish_reason = stream.stats.finish_reason


def _add(total: GenerationStats, part: GenerationStats) -> None:
    """Count one model call into the summary's totals: a counter not summed here would read 0 in ``--stats``."""
    total.prompt_tokens += part.prompt_tokens
    total.prefill_tokens += part.prefill_tokens
    total.new_tokens += part.new_tokens
    total.total_s += part.total_s
    total.weights, total.decoding, total.notes = part.weights, part.decoding, part.notes  # as the calls ran
    if not total.ttft_ms:
        total.ttft_ms = part.ttft_ms
