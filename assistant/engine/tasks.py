"""Running a task request on the engine: the prompt builders of ``core.prompts`` plus summaries of any length."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path

from assistant.core.context import split_into_chunks
from assistant.core.document_parts import Part, split_document
from assistant.core.errors import InputError
from assistant.core.grounding import central_sentences, invented_terms, names_nothing, tidy_summary
from assistant.core.prompts import (
    SUMMARY_FORMS,
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
    build_part_summary,
    build_poem,
    build_rewrite,
    build_story,
    build_summary,
    build_summary_combine,
    build_translate,
    part_summary_opening,
    summary_room,
    summary_templates,
)
from assistant.core.settings import SamplerSettings
from assistant.core.synopsis import PartSummary, SummaryCache, Synopsis, cache_key, render_overall, render_part
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


MAX_REGENERATIONS = 2
"""Drafts after the first when a summary names or counts what its source does not; then the extractive fallback."""

SUMMARY_VERSION = 1
"""Part of every cache key: bump it when the pipeline or its check changes what a summary would be."""

SUMMARY_MAX_TEMPERATURE = 0.3
"""Summaries are drafted at most this warm: the app's temperature is set for stories, and a creative summary is a
wrong one (at 0.7 the bundled model invents a name in most chapter summaries)."""

OVERALL_TOKENS = 160
"""Most tokens the overall summary may take (fewer when the user's maximum answer length is lower)."""

ANSWER_OPENING_TOKENS = 16
"""Room kept for the answer's opening words ("In this chapter,"), which sit in the prompt."""

PartCallback = Callable[[PartSummary], None]


class SynopsisStream(TextStream):
    """A summary's text, plus the structured :class:`Synopsis` it is made of (filled in as each part is done)."""

    def __init__(self, pieces: Iterator[str], stats: GenerationStats, synopsis: Synopsis) -> None:
        super().__init__(pieces, stats)
        self.synopsis = synopsis


def summarize(
    engine: Engine,
    request: SummaryRequest,
    settings: SamplerSettings,
    cancel: CancelToken,
    progress: SummaryProgress | None = None,
    on_part: PartCallback | None = None,
    cache: SummaryCache | None = None,
) -> SynopsisStream:
    """Summarize a text of any length by its own structure: each part alone, then the whole from those summaries.

    The document is split on its headings (``core.document_parts``); each part gets a short summary made from that
    part alone (a part longer than the context in pieces, combined), checked for invented names and numbers
    (:class:`_SummaryWriter`), labelled with the part's title and cached by the part's text. The overall summary is
    made from the part summaries. The synopsis form streams each part as it is done, then the whole; the paragraph
    form gives the whole only. A cancelled run ends with the parts done so far, in either form.
    """
    if request.form not in SUMMARY_FORMS:
        raise InputError(f"Unknown summary form '{request.form}'; choose one of {', '.join(SUMMARY_FORMS)}.")
    if not request.text.strip():
        raise InputError("The text to summarize is empty: there is nothing to work on.")
    parts = split_document(request.text)
    if all(part.is_empty for part in parts):
        raise InputError("The text has headings but nothing under them: there is nothing to summarize yet.")
    report = progress or (lambda _message, _fraction: None)
    stats = GenerationStats(
        load_s=engine.loaded.load_seconds,
        weights=engine.loaded.weights,
        decoding=engine.decode_path,
        notes=engine.notes,
    )
    synopsis = Synopsis(total_parts=len(parts))
    if request.use_cache and cache is None:
        cache = SummaryCache()
    writer = _SummaryWriter(engine, request, settings, cancel, stats, cache if request.use_cache else None, report)

    def pieces() -> Iterator[str]:
        for index, part in enumerate(parts, 1):
            report(f"Summarizing part {index} of {len(parts)}: {part.title}", (index - 1) / len(parts))
            done = writer.part(index, len(parts), part)
            if done is None:
                break
            synopsis.parts.append(done)
            if on_part is not None:
                on_part(done)
            if request.form == "synopsis":
                yield render_part(done) + "\n"
        else:
            report("Combining the summaries", 1.0)
            overall = writer.overall(synopsis.parts, request.text)
            if overall is not None:
                synopsis.overall, synopsis.overall_source = overall
                synopsis.complete = True
                if request.form == "synopsis":
                    yield render_overall(synopsis.overall)
                else:
                    yield synopsis.to_text("paragraph")
                return
        stats.finish_reason = "cancelled"
        if request.form == "paragraph":
            yield synopsis.to_text("synopsis")  # the parts done so far: Stop keeps them
        else:
            yield f"(stopped after {len(synopsis.parts)} of {synopsis.total_parts} parts)\n"

    return SynopsisStream(pieces(), stats, synopsis)


def summarize_document(
    engine: Engine,
    text: str,
    settings: SamplerSettings,
    cancel: CancelToken | None = None,
    progress: SummaryProgress | None = None,
    on_part: PartCallback | None = None,
    cache: SummaryCache | None = None,
) -> Synopsis:
    """The whole synopsis as data (what the GUI's side panel shows); ``complete`` is False after Stop."""
    stream = summarize(
        engine, SummaryRequest(text, form="synopsis"), settings, cancel or CancelToken(), progress, on_part, cache
    )
    for _piece in stream:
        pass
    return stream.synopsis


def model_fingerprint(engine: Engine) -> str:
    """What makes one model's summaries differ from another's: where its weights come from and how they run."""
    loaded = engine.loaded
    source = loaded.source
    stamp = ""
    weights_file = source.gguf_file or (Path(source.location) if source.kind != "hub" else None)
    if weights_file is not None and weights_file.is_file():
        status = weights_file.stat()
        stamp = f"{status.st_size}:{int(status.st_mtime)}"
    return json.dumps(
        [source.kind, source.location, str(source.gguf_file or ""), stamp, loaded.weights, loaded.placement.device]
    )


class _SummaryWriter:
    """Writes grounded summaries: a part's, a long part's pieces', and the whole's; through the cache.

    When a draft names a proper noun or a number its source never mentions, we regenerate rather than delete the
    word: deleting "Toy Story" from "Ana watches Toy Story" leaves a sentence that is still about something the part
    never says, and a broken one. A new draft (lower temperature, another seed) usually copies the names it sees;
    after MAX_REGENERATIONS failed drafts the part's own most central sentences stand in (extractive), which cannot
    invent anything and are marked as quoted in the synopsis. Numbers are bounded retries too: a model that writes
    "four boats" for "three boats" has misread the part, not misspelled a word.
    """

    def __init__(
        self,
        engine: Engine,
        request: SummaryRequest,
        settings: SamplerSettings,
        cancel: CancelToken,
        stats: GenerationStats,
        cache: SummaryCache | None,
        report: SummaryProgress,
    ) -> None:
        self.engine = engine
        self.request = request
        settings = replace(settings, temperature=min(settings.temperature, SUMMARY_MAX_TEMPERATURE))
        self.settings = settings
        self.part_settings = replace(settings, max_new_tokens=min(settings.max_new_tokens, request.part_summary_tokens))
        self.cancel = cancel
        self.stats = stats
        self.cache = cache
        self.report = report
        self.room = min(summary_room(engine.measure(self.part_settings.max_new_tokens)), request.chunk_tokens)
        self.model = model_fingerprint(engine)
        self.version: tuple[object, ...] = (
            SUMMARY_VERSION,
            MAX_REGENERATIONS,
            settings.to_dict(),
            request.part_summary_tokens,
            request.part_input_words,
            request.chunk_tokens,
            summary_templates(),
        )

    # --- parts ---------------------------------------------------------------------------------------------

    def part(self, index: int, total: int, part: Part) -> PartSummary | None:
        """The part's summary (from the cache when its text is unchanged); None when cancelled."""
        if part.is_empty:
            return PartSummary(index, part.title, part.start, part.end, "", "empty")
        key = cache_key("part", part.text, self.model, self.version)
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is not None:
            return PartSummary(index, part.title, part.start, part.end, hit[0], hit[1], cached=True)
        label = f"part {index} of {total}"
        kind = _kind_word(part)
        heading = part.text[: part.body_start - part.start].strip() if part.kind == "heading" else ""
        if self.engine.count_tokens(part.text) <= self.room:
            draft = self._drafter(self._digest(part.body, heading), kind)
        else:
            draft = self._long_part_drafter(part.body, heading, kind, label)
        result = self._grounded(part.text, draft, self.part_settings, lambda: central_sentences(part.body), label)
        if result is None:
            return None
        summary, source, rejected = result
        if self.cache is not None:
            self.cache.put(key, summary, source)
        return PartSummary(index, part.title, part.start, part.end, summary, source, rejected=rejected)

    def _digest(self, body: str, heading: str = "") -> str:
        """What the model reads of a part: its heading, then the body or, if longer, its key sentences in order."""
        limit = self.request.part_input_words
        if limit > 0 and len(body.split()) > limit:
            body = central_sentences(body, max_words=limit, max_sentences=limit, lead=2)
        return f"{heading}\n\n{body.strip()}" if heading else body.strip()

    def _drafter(self, text: str, kind: str) -> Callable[[SamplerSettings], str | None]:
        """Drafts of one part's summary, each begun with the template's opening ("In this chapter,")."""

        def draft(settings: SamplerSettings) -> str | None:
            measure = self.engine.measure(settings.max_new_tokens + ANSWER_OPENING_TOKENS)
            prompt = build_part_summary(text, kind, measure)
            opening = part_summary_opening(kind)
            if not (opening and self.engine.has_chat_template and prompt.messages is not None):
                return self._generate(prompt, settings)
            rendered = Prompt(text=self.engine.render_chat(prompt.messages) + opening, stop=prompt.stop)
            return self._generate(rendered, settings, opening)

        return draft

    def _long_part_drafter(
        self, body: str, heading: str, kind: str, label: str
    ) -> Callable[[SamplerSettings], str | None]:
        """A part longer than one prompt: its pieces are summarized (and checked) once, then combined per draft."""
        pieces: list[str] = []

        def draft(settings: SamplerSettings) -> str | None:
            if not pieces:
                chunks = split_into_chunks(body, self.room, self.engine.count_tokens)
                for number, chunk in enumerate(chunks, 1):
                    self.report(f"Summarizing {label}, piece {number} of {len(chunks)}", None)
                    text = self._digest(chunk, heading if number == 1 else "")
                    done = self._grounded(
                        chunk, self._drafter(text, kind), self.part_settings, partial(central_sentences, chunk)
                    )
                    if done is None:
                        return None
                    pieces.append(done[0])
            titles = [f"Passage {number}" for number in range(1, len(pieces) + 1)]
            return self._combine(pieces, titles, settings, ("passages", kind))

        return draft

    # --- the whole -----------------------------------------------------------------------------------------

    def overall(self, parts: list[PartSummary], document: str) -> tuple[str, str] | None:
        """The summary of the whole from the part summaries, checked against the document; None when cancelled."""
        usable = [part for part in parts if part.source != "empty"]
        if len(usable) == 1:
            return usable[0].summary, usable[0].source
        summaries = [part.summary for part in usable]
        titles = [part.title for part in usable]
        key = cache_key("overall", json.dumps([titles, summaries]), self.model, self.version)
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is not None:
            return hit

        kinds = {_kind_word_of(part.title) for part in usable}
        words = ("chapters", "story") if kinds == {"chapter"} else ("parts", "text")

        def draft(settings: SamplerSettings) -> str | None:
            return self._combine(summaries, titles, settings, words)

        def fallback() -> str:
            openings = tuple(part_summary_opening(kind) + " " for kind in ("chapter", "scene", "part"))
            plain = [_drop_prefix(summary, openings) for summary in summaries]  # "In this chapter, we ..." alone
            return central_sentences("\n".join(plain), max_words=90, max_sentences=4)

        overall_settings = replace(self.settings, max_new_tokens=min(self.settings.max_new_tokens, OVERALL_TOKENS))
        result = self._grounded(document, draft, overall_settings, fallback, "the whole")
        if result is None:
            return None
        if self.cache is not None:
            self.cache.put(key, result[0], result[1])
        return result[0], result[1]

    def _combine(
        self, summaries: list[str], titles: list[str], settings: SamplerSettings, words: tuple[str, str]
    ) -> str | None:
        """One summary of many; when they do not fit one prompt, groups are combined first (as often as needed).

        ``words`` names the parts and the whole in the prompt: ("chapters", "story"), ("passages", "chapter") ...
        """
        for _round in range(8):
            measure = self.engine.measure(settings.max_new_tokens)
            if _fits_combined(self.engine, summaries, settings, titles, words):
                return self._generate(build_summary_combine(summaries, measure, titles, *words), settings)
            grouped: list[str] = []
            for group in _groups(summaries, titles, self.room, self.engine.count_tokens):
                done = self._generate(
                    build_summary_combine([summaries[i] for i in group], measure, [titles[i] for i in group], *words),
                    self.part_settings,
                )
                if done is None:
                    return None
                grouped.append(done)
            titles = [f"Section {number}" for number in range(1, len(grouped) + 1)]
            summaries = grouped
        return self._generate(
            build_summary("\n\n".join(summaries), self.engine.measure(settings.max_new_tokens)), settings
        )

    # --- drafts and the check ------------------------------------------------------------------------------

    def _grounded(
        self,
        source: str,
        draft: Callable[[SamplerSettings], str | None],
        settings: SamplerSettings,
        fallback: Callable[[], str],
        label: str = "",
    ) -> tuple[str, str, tuple[str, ...]] | None:
        """A draft with no invented name or number, after at most MAX_REGENERATIONS more; else the fallback."""
        rejected: list[str] = []
        for attempt in range(MAX_REGENERATIONS + 1):
            text = draft(_attempt_settings(settings, attempt))
            if text is None:
                return None
            invented = invented_terms(text, source)
            if text and not invented and not names_nothing(text, source):
                return text, "model" if attempt == 0 else "regenerated", tuple(dict.fromkeys(rejected))
            rejected.extend(invented)
            if label:
                if invented:
                    reason = f"it named {', '.join(invented[:3])}, which the text does not"
                else:
                    reason = "it was empty" if not text else "it named no one from the text"
                self.report(f"Summarizing {label} again: {reason}", None)
        return fallback(), "extractive", tuple(dict.fromkeys(rejected))

    def _generate(self, prompt: Prompt, settings: SamplerSettings, opening: str = "") -> str | None:
        """One model call, counted into the stats, tidied; None when it was cancelled (a half summary is not kept).

        ``opening`` is the answer's first words, already in the prompt: the draft is the opening plus what follows.
        """
        if self.cancel.cancelled:
            return None
        stream = self.engine.stream(prompt, settings, self.cancel)
        text = stream.text()
        _add(self.stats, stream.stats)
        self.stats.finish_reason = stream.stats.finish_reason
        if self.cancel.cancelled or stream.stats.finish_reason == "cancelled":
            return None
        text = _PREAMBLE.sub("", text.strip(), count=1)
        if opening and text[:1].islower():  # "In this chapter, we see Ana ..." keeps its opening to read well,
            text = f"{opening} {text}"  # "In this chapter, Ana ..." is shown as "Ana ..." under the chapter's title
        return tidy_summary(text)


def _attempt_settings(settings: SamplerSettings, attempt: int) -> SamplerSettings:
    """The first draft as asked; later ones cooler (likelier words: the part's own names) and with another seed.

    Greedy decoding would give the same draft again, so it samples gently (0.3) instead.
    """
    if attempt == 0:
        return settings
    temperature = settings.temperature / (2 * attempt) if settings.temperature > 0 else 0.3
    seed = None if settings.seed is None else settings.seed + attempt
    return replace(settings, temperature=temperature, seed=seed)


_PREAMBLE = re.compile(r"^(?:(?:here is|here's|sure|summary|in summary)[^\n]*?:\s*)", re.IGNORECASE)


def _drop_prefix(text: str, prefixes: tuple[str, ...]) -> str:
    for prefix in prefixes:
        if prefix.strip() and text.startswith(prefix):
            rest = text[len(prefix) :]
            return rest[:1].upper() + rest[1:]
    return text


def _kind_word(part: Part) -> str:
    """What to call a part in its prompt: "chapter" for chapters, "scene" for scenes, else "part"."""
    if part.kind == "scene":
        return "scene"
    return _kind_word_of(part.title) if part.kind == "heading" else "part"


def _kind_word_of(title: str) -> str:
    return "chapter" if re.search(r"\b(?:chapter|prologue|epilogue)\b", title, re.IGNORECASE) else "part"


def _groups(summaries: list[str], titles: list[str], room: int, count: Callable[[str], int]) -> list[list[int]]:
    """Consecutive summaries in groups of at most ``room`` tokens (at least one each)."""
    groups: list[list[int]] = [[]]
    used = 0
    for index, (summary, title) in enumerate(zip(summaries, titles, strict=True)):
        size = count(f"{title}: {summary}") + 2
        if groups[-1] and used + size > room:
            groups.append([])
            used = 0
        groups[-1].append(index)
        used += size
    return groups


def _fits_combined(
    engine: Engine,
    summaries: list[str],
    settings: SamplerSettings,
    titles: list[str] | None = None,
    words: tuple[str, str] = ("parts", "text"),
) -> bool:
    measure = engine.measure(settings.max_new_tokens)
    try:
        prompt = build_summary_combine(summaries, measure, titles, *words)
    except InputError:
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
