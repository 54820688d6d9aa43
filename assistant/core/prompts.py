"""Every task the app offers, as a pure function from the user's input to a prompt that fits the model.

Templates live in ``resources/prompts/NAME.txt``; a file of the same name in the user's config folder
(``<config>/prompts/NAME.txt``) overrides it. A template has sections headed ``[system]``, ``[user]`` or any other
name a task uses, lines starting with ``#`` are comments, and ``{placeholder}`` fields are filled by the task.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from assistant.core.context import keep_newest, require_fit
from assistant.core.errors import InputError
from assistant.core.languages import Language, guess_language, language_by_name
from assistant.core.paths import app_dirs
from assistant.core.resources import read_resource

Message = dict[str, str]

TASKS = ("story", "poem", "summary", "rewrite", "translate", "code", "chat")


@dataclass(frozen=True)
class Prompt:
    """What the engine runs: chat ``messages`` (rendered with the model's own template) or raw ``text``."""

    messages: tuple[Message, ...] | None = None
    text: str | None = None
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.text is None):
            raise ValueError("a Prompt has either messages or text")


class PromptMeasure(Protocol):
    """What a task needs from the engine to fit its prompt: token counts and the room there is."""

    @property
    def limit(self) -> int:
        """Tokens the prompt may take: the context length minus the room kept for the answer."""
        ...

    def count_prompt(self, prompt: Prompt) -> int: ...


# --- templates -------------------------------------------------------------------------------------------------

_SECTION = re.compile(r"^\[([a-z_]+)\]\s*$")
_FIELD = re.compile(r"\{([a-z_]+)\}")


def load_template(name: str) -> dict[str, str]:
    """The sections of a template, from the user's override when there is one."""
    override = app_dirs().prompts / f"{name}.txt"
    source = override.read_text(encoding="utf-8") if override.is_file() else read_resource("prompts", f"{name}.txt")
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in source.splitlines():
        header = _SECTION.match(line)
        if header:
            current = sections.setdefault(header.group(1), [])
        elif current is not None and not line.startswith("#"):
            current.append(line)
    return {key: "\n".join(lines).strip("\n") for key, lines in sections.items()}


def fill(template: str, **values: str) -> str:
    """Fill ``{field}``s; unknown fields and stray braces stay as written, so user templates cannot crash."""
    return _FIELD.sub(lambda match: values.get(match.group(1), match.group(0)), template)


def _chat(template: dict[str, str], **values: str) -> tuple[Message, ...]:
    messages: list[Message] = []
    if template.get("system", "").strip():
        messages.append({"role": "system", "content": fill(template["system"], **values)})
    messages.append({"role": "user", "content": fill(template.get("user", "{text}"), **values)})
    return tuple(messages)


def _fit_field(measure: PromptMeasure, build: Callable[[str], Prompt], text: str, what: str, whole: bool) -> Prompt:
    """Build a prompt around ``text``, dropping its oldest words if needed (or refusing, when it must stay whole)."""
    prompt: Prompt = build(text)
    if measure.count_prompt(prompt) <= measure.limit:
        return prompt
    if whole:
        overhead = measure.count_prompt(build(""))
        require_fit(measure.count_prompt(prompt) - overhead, measure.limit - overhead, what)
    kept = keep_newest(text, lambda candidate: measure.count_prompt(build(candidate)) <= measure.limit)
    if not kept.strip():
        raise InputError(f"{what} leaves no room in this model's context; lower the maximum answer length.")
    return build(kept)


def _require_text(text: str, what: str) -> str:
    if not text or not text.strip():
        raise InputError(f"{what} is empty: there is nothing to work on.")
    return text


# --- story -----------------------------------------------------------------------------------------------------

AUTHORS_NOTE_DEPTH = 3
"""The author's note goes this many lines before the end, where it steers the next words most (KoboldCpp)."""


@dataclass(frozen=True)
class StoryRequest:
    story: str
    memory: str = ""
    authors_note: str = ""


def build_story(request: StoryRequest, measure: PromptMeasure) -> Prompt:
    """Plain continuation: memory first (always kept), the story trimmed from the front, the note near the end."""
    _require_text(request.story + request.memory, "The story")
    template = load_template("story")
    memory = fill(template.get("memory", "{memory}"), memory=request.memory.strip()) if request.memory.strip() else ""
    note = (
        fill(template.get("authors_note", "{note}"), note=request.authors_note.strip())
        if request.authors_note.strip()
        else ""
    )

    def build(story: str) -> Prompt:
        story = story.rstrip(" \t")
        parts: list[str] = []
        if memory:
            parts.append(memory.rstrip() + "\n\n")
        if note:
            lines = story.split("\n")
            depth = min(AUTHORS_NOTE_DEPTH, len(lines) - 1)
            head = "\n".join(lines[: len(lines) - depth]) if depth > 0 else ""
            tail = "\n".join(lines[len(lines) - depth :]) if depth > 0 else story
            if head:
                parts.append(head + "\n")
            parts.append(note + "\n")
            parts.append(tail)
        else:
            parts.append(story)
        return Prompt(text="".join(parts))

    if memory or note:
        overhead = measure.count_prompt(build(""))
        if overhead > measure.limit:
            raise InputError("The story memory and author's note alone fill this model's context; shorten them.")
    return _fit_field(measure, build, request.story, "The story", whole=False)


# --- poem ------------------------------------------------------------------------------------------------------

POEM_FORMS: dict[str, str] = {
    "free verse": "Let the lines breathe; do not force rhyme or meter.",
    "haiku": "Write exactly three lines of 5, 7 and 5 syllables.",
    "sonnet": "Write fourteen rhymed lines in iambic pentameter.",
    "limerick": "Write five lines rhyming AABBA, with a humorous turn.",
    "quatrain": "Write four rhymed lines.",
    "villanelle": "Write nineteen lines: five tercets and a quatrain, with two refrains.",
    "ballad": "Write rhymed four-line stanzas that tell a story.",
}


@dataclass(frozen=True)
class PoemRequest:
    theme: str
    form: str = "free verse"
    style: str = ""


def build_poem(request: PoemRequest, measure: PromptMeasure) -> Prompt:
    _require_text(request.theme, "The poem's theme")
    template = load_template("poem")
    form = request.form.strip().lower() or "free verse"
    rules = POEM_FORMS.get(form, "")
    style = f" Style: {request.style.strip()}." if request.style.strip() else ""

    def build(theme: str) -> Prompt:
        return Prompt(messages=_chat(template, theme=theme, form=form, form_rules=rules, style=style))

    return _fit_field(measure, build, request.theme.strip(), "The poem's theme", whole=True)


# --- summary ---------------------------------------------------------------------------------------------------


SUMMARY_FORMS = ("paragraph", "synopsis")
"""paragraph: one short paragraph (the default); synopsis: each part's title and summary in order, then the whole."""


@dataclass(frozen=True)
class SummaryRequest:
    """A text of any length to summarize: split on its own headings, each part summarized alone, then the whole."""

    text: str
    form: str = "paragraph"
    """One of :data:`SUMMARY_FORMS`; both are built from the same part summaries (and the same cache)."""
    chunk_tokens: int = 2048
    """Largest piece summarized in one go; small models summarize short pieces better, and prefill is faster."""
    part_summary_tokens: int = 96
    """Most tokens each part's summary may take: two or three sentences."""
    part_input_words: int = 350
    """A longer part reaches the model as its opening and most central sentences, in order, about this many words
    (0: the whole part). A 135M model loses track in 1,500 words and reads 4x fewer tokens in a quarter of the time;
    the summary is still checked against the whole part."""
    use_cache: bool = True
    """Reuse the summaries of parts whose text, model and settings are unchanged (see core.synopsis)."""


def build_summary(text: str, measure: PromptMeasure) -> Prompt:
    """The prompt for one piece that fits; longer texts go through the engine's chunked summary."""
    _require_text(text, "The text to summarize")
    template = load_template("summary")
    return _fit_field(
        measure,
        lambda piece: Prompt(messages=_chat(template, text=piece)),
        text,
        "The text to summarize",
        whole=True,
    )


def summary_room(measure: PromptMeasure) -> int:
    """Tokens of text one summary prompt (of a whole text, or of one part) can hold."""
    overheads = [
        measure.count_prompt(Prompt(messages=_chat(load_template(name), text="", kind="chapter")))
        for name in ("summary", "summary_part")
    ]
    return measure.limit - max(overheads)


def build_part_summary(text: str, kind: str, measure: PromptMeasure) -> Prompt:
    """The prompt for one part of a longer text (``kind``: "chapter", "scene", "part"), which must fit whole."""
    _require_text(text, "The part to summarize")
    template = load_template("summary_part")
    return _fit_field(
        measure,
        lambda piece: Prompt(messages=_chat(template, text=piece, kind=kind)),
        text,
        "The part to summarize",
        whole=True,
    )


def part_summary_opening(kind: str) -> str:
    """How a part's summary starts ("In this chapter,"): the engine writes it as the answer's first words."""
    return fill(load_template("summary_part").get("answer", ""), kind=kind).strip()


def build_summary_combine(
    summaries: Sequence[str],
    measure: PromptMeasure,
    titles: Sequence[str] | None = None,
    parts: str = "parts",
    whole: str = "text",
) -> Prompt:
    """One summary from the summaries of consecutive parts, each labelled with its title (or "Part N").

    ``parts`` and ``whole`` name them in the prompt ("chapters" of a "story"): the bundled model writes about the
    story it is told it has, and about "a text" as an essay.
    """
    template = load_template("summary_combine")
    labels = list(titles) if titles is not None else [f"Part {index}" for index in range(1, len(summaries) + 1)]
    joined = "\n\n".join(f"{label}: {summary.strip()}" for label, summary in zip(labels, summaries, strict=True))
    return _fit_field(
        measure,
        lambda text: Prompt(messages=_chat(template, text=text, parts=parts, whole=whole)),
        joined,
        "The partial summaries",
        whole=True,
    )


def summary_templates() -> tuple[str, ...]:
    """The summary templates as the user has them: part of what a cached summary depends on."""
    names = ("summary", "summary_part", "summary_combine")
    return tuple(section for name in names for section in load_template(name).values())


# --- rewrite and translate -------------------------------------------------------------------------------------

REWRITE_STYLES: dict[str, str] = {
    "shorter": "Make it shorter and tighter while keeping its meaning.",
    "longer": "Make it longer, adding detail and imagery while keeping its meaning.",
    "formal": "Make it formal and polished.",
    "vivid": "Make it more vivid, with concrete, sensory detail and strong verbs.",
    "simpler": "Make it simpler and easier to read.",
    "friendlier": "Make it warmer and friendlier.",
}


@dataclass(frozen=True)
class RewriteRequest:
    text: str
    style: str = "shorter"
    instruction: str = ""
    """Used when ``style`` is "custom", or added to a named style."""


def build_rewrite(request: RewriteRequest, measure: PromptMeasure) -> Prompt:
    _require_text(request.text, "The text to rewrite")
    style = request.style.strip().lower()
    if style == "custom" or style not in REWRITE_STYLES:
        instruction = request.instruction.strip() or (style if style and style != "custom" else "")
        if not instruction:
            raise InputError("Say how to rewrite the text (for example: 'in the past tense').")
        if not instruction.endswith((".", "!", "?")):
            instruction += "."
    else:
        instruction = REWRITE_STYLES[style]
        if request.instruction.strip():
            instruction += " " + request.instruction.strip()
    template = load_template("rewrite")
    return _fit_field(
        measure,
        lambda text: Prompt(messages=_chat(template, text=text, instruction=instruction)),
        request.text.strip(),
        "The text to rewrite",
        whole=True,
    )


@dataclass(frozen=True)
class TranslateRequest:
    text: str
    language: str


def build_translate(request: TranslateRequest, measure: PromptMeasure) -> Prompt:
    _require_text(request.text, "The text to translate")
    if not request.language.strip():
        raise InputError("Choose the language to translate into.")
    template = load_template("translate")
    return _fit_field(
        measure,
        lambda text: Prompt(messages=_chat(template, text=text, language=request.language.strip())),
        request.text.strip(),
        "The text to translate",
        whole=True,
    )


# --- code ------------------------------------------------------------------------------------------------------

CODE_MODES = ("complete", "explain", "generate", "fix")


@dataclass(frozen=True)
class CodeRequest:
    code: str
    mode: str = "complete"
    language: str | None = None
    filename: str | None = None
    error: str = ""


@dataclass(frozen=True)
class InlineRequest:
    """An inline suggestion at the cursor (ghost text, ``penwright complete``): the text before and after it.

    The prompt is built by the engine's completer (FIM tokens are the model's own); where the suggestion ends is
    :mod:`assistant.core.completion_rules`.
    """

    mode: str
    """"code" or "prose"."""
    prefix: str
    suffix: str = ""
    language: str | None = None
    pane: str = ""


def resolve_language(request: CodeRequest) -> Language:
    if request.language:
        return language_by_name(request.language)
    return guess_language(request.code, request.filename)


def build_code(request: CodeRequest, measure: PromptMeasure) -> Prompt:
    mode = request.mode.strip().lower()
    if mode not in CODE_MODES:
        raise InputError(f"Unknown code action '{request.mode}'; choose one of {', '.join(CODE_MODES)}.")
    what = "The comment to turn into code" if mode == "generate" else "The code"
    _require_text(request.code, what)
    language = resolve_language(request)
    if mode == "complete":
        # A plain continuation of the code: the newest lines matter most, the oldest are dropped first.
        return _fit_field(measure, lambda code: Prompt(text=code), request.code, "The code", whole=False)
    if mode == "generate":
        template = load_template("code_generate")
        return _fit_field(
            measure,
            lambda text: Prompt(messages=_chat(template, request=text, language=language.name, fence=language.fence)),
            request.code.strip(),
            what,
            whole=True,
        )
    if mode == "explain":
        template = load_template("code_explain")
        return _fit_field(
            measure,
            lambda code: Prompt(messages=_chat(template, code=code, language=language.name, fence=language.fence)),
            request.code.strip("\n"),
            what,
            whole=False,
        )
    template = load_template("code_fix")
    error = f"\nThe error is:\n{request.error.strip()}" if request.error.strip() else ""
    return _fit_field(
        measure,
        lambda code: Prompt(
            messages=_chat(template, code=code, language=language.name, fence=language.fence, error=error)
        ),
        request.code.strip("\n"),
        what,
        whole=True,
    )


# --- chat ------------------------------------------------------------------------------------------------------


def default_system_prompt() -> str:
    return load_template("chat").get("system", "").strip()


@dataclass(frozen=True)
class ChatRequest:
    history: Sequence[Message]
    """The conversation so far, oldest first, ending with the user's newest message."""
    system_prompt: str | None = None
    """None uses the default from the chat template; "" sends no system prompt."""
    extra_stop: tuple[str, ...] = field(default_factory=tuple)


def build_chat(request: ChatRequest, measure: PromptMeasure) -> Prompt:
    """Multi-turn chat: the system prompt and the newest message are kept; the oldest turns go first."""
    turns = [dict(message) for message in request.history]
    if not turns or turns[-1].get("role") != "user" or not turns[-1].get("content", "").strip():
        raise InputError("The message is empty: type something to send.")
    system = default_system_prompt() if request.system_prompt is None else request.system_prompt.strip()
    head: list[Message] = [{"role": "system", "content": system}] if system else []

    def build(kept: list[Message]) -> Prompt:
        return Prompt(messages=tuple(head + kept), stop=request.extra_stop)

    # Candidate starts are user turns, so the kept history never opens with an orphan answer. Fewer turns always
    # take fewer tokens, so a binary search finds the oldest start that fits in a few token counts.
    starts = [index for index, turn in enumerate(turns) if turn.get("role") == "user"]
    low, high = 0, len(starts) - 1
    start = starts[-1]
    while low <= high:
        middle = (low + high) // 2
        if measure.count_prompt(build(turns[starts[middle] :])) <= measure.limit:
            start = starts[middle]
            high = middle - 1
        else:
            low = middle + 1
    kept = turns[start:]
    if measure.count_prompt(build(kept)) <= measure.limit:
        return build(kept)
    newest = kept[-1]["content"]

    def with_newest(text: str) -> Prompt:
        return build([{"role": "user", "content": text}])

    return _fit_field(measure, with_newest, newest, "The message", whole=False)
