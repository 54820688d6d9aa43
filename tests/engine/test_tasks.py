"""Every task the app offers gives real text from the bundled model; long texts are summarized by their parts.

The synopsis pipeline's rules (the invention check, retries, the cache, Stop, progress) are tested on a fake engine
that counts its calls; the real model then shows it end to end.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from assistant.core.errors import InputError
from assistant.core.grounding import invented_terms, proper_nouns, sentences
from assistant.core.prompts import (
    ChatRequest,
    CodeRequest,
    PoemRequest,
    Prompt,
    RewriteRequest,
    StoryRequest,
    SummaryRequest,
    TranslateRequest,
)
from assistant.core.settings import SamplerSettings
from assistant.core.synopsis import SummaryCache
from assistant.engine.generate import CancelToken, GenerationStats, TextStream
from assistant.engine.tasks import MAX_REGENERATIONS, SynopsisStream, run_task, summarize, summarize_document

SETTINGS = SamplerSettings(max_new_tokens=32, seed=7)

REQUESTS = {
    "story": StoryRequest("The fox crept to the edge of the frozen river.", memory="The fox is called Ash."),
    "poem": PoemRequest("autumn rain", "haiku"),
    "summary": SummaryRequest(
        "The city council met on Tuesday to discuss the new park. After a long debate, members voted to build it "
        "near the river, with a playground, a small library and a community garden. Work starts in spring."
    ),
    "rewrite": RewriteRequest("The meeting was long and people were bored and it went on.", "shorter"),
    "translate": TranslateRequest("Good morning, my friend. How are you today?", "French"),
    "code-complete": CodeRequest("def fibonacci(n):\n", "complete", language="python"),
    "code-explain": CodeRequest("print(sum(x * x for x in range(10)))", "explain", language="python"),
    "code-generate": CodeRequest("# read a file and count its lines", "generate", language="python"),
    "code-fix": CodeRequest("def add(a, b):\n    return a - b\n", "fix", language="python", error="add(1, 2) == -1"),
    "chat": ChatRequest(
        [
            {"role": "user", "content": "My name is Ada."},
            {"role": "assistant", "content": "Nice to meet you, Ada!"},
            {"role": "user", "content": "What is a good name for a cat?"},
        ]
    ),
}


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_each_task_streams_non_empty_text(engine, name: str) -> None:
    stream = run_task(engine, REQUESTS[name], SETTINGS)
    pieces = list(stream)
    text = "".join(pieces)
    assert text.strip(), f"{name} produced no text"
    assert "<|im_end|>" not in text and "<|im_start|>" not in text, "no special tokens reach the user"
    assert stream.stats.new_tokens >= 1
    assert 0 < stream.stats.prefill_tokens <= stream.stats.prompt_tokens, "a summary's stats count its prefill too"
    assert stream.stats.weights == engine.loaded.weights and stream.stats.decoding == engine.decode_path


@pytest.mark.long
def test_a_20000_word_text_is_summarized_in_parts(engine) -> None:
    """Far longer than the 8,192-token context: split, each part summarized, then the summaries combined."""
    topics = ["the harbour", "the old mill", "the winter festival", "the river flood", "the new school"]
    paragraphs = []
    for index in range(800):
        topic = topics[index % len(topics)]
        paragraphs.append(
            f"In chapter {index}, the villagers talked about {topic} again. Martha said the work was hard but "
            f"worth it, and the children ran along the road while the bells rang."
        )
    text = "\n\n".join(paragraphs)
    assert len(text.split()) >= 20_000
    assert engine.count_tokens(text) > 3 * engine.context_length
    progress: list[str] = []
    stream = run_task(
        engine,
        SummaryRequest(text),
        SamplerSettings(max_new_tokens=64, temperature=0, repetition_penalty=1.1),
        progress=lambda stage, _fraction: progress.append(stage),
    )
    summary = stream.text()
    assert summary.strip()
    assert len(summary.split()) < 200
    starts = [stage for stage in progress if re.match(r"Summarizing part \d+ of \d+: ", stage)]
    assert len(starts) >= 10 and starts[-1].startswith(f"Summarizing part {len(starts)} of {len(starts)}: ")
    assert "Combining the summaries" in progress
    assert isinstance(stream, SynopsisStream) and stream.synopsis.complete
    assert len(stream.synopsis.parts) == len(starts)


# --- the synopsis pipeline on a fake engine ------------------------------------------------------------------------

CITIES = ["Lisbon", "Oslo", "Kyoto", "Nairobi"]
PEOPLE = ["Ana", "Ingrid", "Haruto", "Wanjiru"]


def manuscript(cities: list[str] = CITIES, people: list[str] = PEOPLE) -> str:
    chapters = []
    for number, (city, person) in enumerate(zip(cities, people, strict=True), 1):
        body = " ".join(f"{person} walked through {city} on day {day}, and {person} kept looking." for day in (2, 3, 4))
        chapters.append(f"Chapter {number}: {city}\n\n{body}\n")
    return "\n".join(chapters)


@dataclass
class FakeMeasure:
    engine: FakeEngine
    limit: int

    def count_prompt(self, prompt: Prompt) -> int:
        return self.engine.count_tokens(self.engine.prompt_text(prompt))


@dataclass
class FakeEngine:
    """Answers summary prompts by rule, counts calls; ``answer(prompt_text, call_number)`` decides each draft."""

    answer: Callable[[str, int], str]
    context_length: int = 4096
    has_chat_template: bool = True
    decode_path: str = "fake"
    notes: str = ""
    calls: list[tuple[str, SamplerSettings]] = field(default_factory=list)
    cancel_after: int | None = None
    loaded: SimpleNamespace = field(
        default_factory=lambda: SimpleNamespace(
            load_seconds=0.0,
            weights="fake",
            source=SimpleNamespace(kind="hub", location="fake/model", gguf_file=None),
            placement=SimpleNamespace(device="cpu"),
        )
    )

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def measure(self, max_new_tokens: int) -> FakeMeasure:
        return FakeMeasure(self, self.context_length - max_new_tokens)

    def render_chat(self, messages: object) -> str:
        return "\n".join(message["content"] for message in messages) + "\n"  # type: ignore[attr-defined]

    def prompt_text(self, prompt: Prompt) -> str:
        return prompt.text if prompt.text is not None else self.render_chat(prompt.messages)

    def stream(self, prompt: Prompt, settings: SamplerSettings, cancel: CancelToken) -> TextStream:
        text = self.prompt_text(prompt)
        self.calls.append((text, settings))
        answer = self.answer(text, len(self.calls))
        if self.cancel_after is not None and len(self.calls) >= self.cancel_after:
            cancel.cancel()
        stats = GenerationStats(
            prompt_tokens=self.count_tokens(text), prefill_tokens=self.count_tokens(text), new_tokens=5
        )
        stats.finish_reason = "cancelled" if cancel.cancelled else "eos"

        def pieces() -> Iterator[str]:
            yield answer

        return TextStream(pieces(), stats)


def faithful(text: str, _call: int) -> str:
    """The first person and city the prompt names: a summary that invents nothing."""
    for person, city in zip(PEOPLE, CITIES, strict=True):
        if city in text and person in text:
            if "these are the" in text.lower():  # the combining prompt
                return f"{person} travels through {city}."
            return f"{person} walks through {city}."
    return "Someone walks."


SETTINGS_FAST = SamplerSettings(max_new_tokens=64, temperature=0.7, seed=3)


def part_calls(engine: FakeEngine) -> list[str]:
    return [text for text, _settings in engine.calls if "these are the" not in text.lower()]


def test_synopsis_lists_every_part_with_its_own_title_offset_and_summary(tmp_path: Path) -> None:
    document = manuscript()
    engine = FakeEngine(faithful)
    stream = summarize(engine, SummaryRequest(document, form="synopsis"), SETTINGS_FAST, CancelToken())  # type: ignore[arg-type]
    text = stream.text()
    synopsis = stream.synopsis
    assert synopsis.complete and [part.title for part in synopsis.parts] == [
        f"Chapter {number}: {city}" for number, city in enumerate(CITIES, 1)
    ]
    for part, person, city in zip(synopsis.parts, PEOPLE, CITIES, strict=True):
        assert document[part.start :].startswith(part.title), "the offset is the heading's"
        assert part.summary == f"{person} walks through {city}." and part.source == "model"
    positions = [text.index(f"## {part.title}") for part in synopsis.parts]
    assert positions == sorted(positions) and text.index("## The whole") > positions[-1]
    assert len(part_calls(engine)) == 4 and len(engine.calls) == 5, "one call per part, one for the whole"
    for _prompt_text, settings in engine.calls:
        assert settings.temperature <= 0.3, "summaries are drafted cool whatever the story temperature"
    for (prompt_text, _settings), city in zip(engine.calls, CITIES, strict=False):
        others = [other for other in CITIES if other != city]
        assert city in prompt_text and not any(other in prompt_text for other in others), "each part alone"


def test_paragraph_form_is_built_from_the_same_parts(tmp_path: Path) -> None:
    engine = FakeEngine(faithful)
    text = run_task(engine, SummaryRequest(manuscript()), SETTINGS_FAST).text()  # type: ignore[arg-type]
    assert text == "Ana travels through Lisbon.\n"
    assert len(engine.calls) == 5


def test_progress_says_part_n_of_m() -> None:
    progress: list[str] = []
    summarize_document(FakeEngine(faithful), manuscript(), SETTINGS_FAST, progress=lambda s, _f: progress.append(s))  # type: ignore[arg-type]
    assert progress == [
        "Summarizing part 1 of 4: Chapter 1: Lisbon",
        "Summarizing part 2 of 4: Chapter 2: Oslo",
        "Summarizing part 3 of 4: Chapter 3: Kyoto",
        "Summarizing part 4 of 4: Chapter 4: Nairobi",
        "Combining the summaries",
    ]


def test_editing_one_chapter_redoes_only_that_chapter(tmp_path: Path) -> None:
    cache = SummaryCache(tmp_path / "summaries.sqlite3")
    document = manuscript()
    first = FakeEngine(faithful)
    summarize_document(first, document, SETTINGS_FAST, cache=cache)  # type: ignore[arg-type]
    assert len(first.calls) == 5

    again = FakeEngine(faithful)
    unchanged = summarize_document(again, document, SETTINGS_FAST, cache=cache)  # type: ignore[arg-type]
    assert again.calls == [], "nothing changed: every summary, and the whole, from the cache"
    assert all(part.cached for part in unchanged.parts) and unchanged.complete

    edited = document.replace("Haruto walked through Kyoto on day 2", "Haruto ran through Kyoto on day 2")
    third = FakeEngine(faithful)
    result = summarize_document(third, edited, SETTINGS_FAST, cache=cache)  # type: ignore[arg-type]
    assert [part.cached for part in result.parts] == [True, True, False, True]
    assert len(part_calls(third)) == 1 and "Kyoto" in part_calls(third)[0]
    assert len(third.calls) == 1, "the whole is built from the same summaries again: cached too"

    other_model = FakeEngine(faithful)
    other_model.loaded.weights = "int8"
    summarize_document(other_model, document, SETTINGS_FAST, cache=cache)  # type: ignore[arg-type]
    assert len(other_model.calls) == 5, "another model's summaries are its own"


def test_use_cache_false_always_asks_the_model(tmp_path: Path) -> None:
    for _round in range(2):
        engine = FakeEngine(faithful)
        run_task(engine, SummaryRequest(manuscript(), use_cache=False), SETTINGS_FAST).text()  # type: ignore[arg-type]
        assert len(engine.calls) == 5


def invents_in_oslo(times: int) -> Callable[[str, int], str]:
    """Invents "Toy Story" in the Oslo chapter's first ``times`` drafts."""
    seen = {"count": 0}

    def answer(text: str, call: int) -> str:
        if "Oslo" in text and "these are the" not in text.lower():
            seen["count"] += 1
            if seen["count"] <= times:
                return "Ingrid watches Toy Story in Oslo."
        return faithful(text, call)

    return answer


def test_an_invented_name_is_regenerated_cooler_with_another_seed() -> None:
    engine = FakeEngine(invents_in_oslo(1))
    result = summarize_document(engine, manuscript(), SETTINGS_FAST)  # type: ignore[arg-type]
    oslo = result.parts[1]
    assert oslo.source == "regenerated" and oslo.summary == "Ingrid walks through Oslo."
    assert oslo.rejected == ("Toy", "Story")
    drafts = [settings for text, settings in engine.calls if "Oslo" in text and "these are the" not in text.lower()]
    assert len(drafts) == 2
    assert drafts[1].temperature < drafts[0].temperature and drafts[1].seed != drafts[0].seed


def test_a_part_that_keeps_inventing_falls_back_to_its_own_sentences() -> None:
    document = manuscript()
    engine = FakeEngine(invents_in_oslo(99))
    result = summarize_document(engine, document, SETTINGS_FAST)  # type: ignore[arg-type]
    oslo = result.parts[1]
    assert oslo.source == "extractive"
    assert len([text for text, _ in engine.calls if "Oslo" in text and "these are the" not in text.lower()]) == (
        1 + MAX_REGENERATIONS
    )
    assert oslo.summary and all(sentence in document for sentence in sentences(oslo.summary)), "quoted"
    assert invented_terms(oslo.summary, document[oslo.start : oslo.end]) == []
    assert "[sentences from the text]" in result.to_text("synopsis")


def test_a_summary_that_names_no_one_is_regenerated() -> None:
    def vague_first(text: str, call: int) -> str:
        return "This helps people connect." if call == 1 else faithful(text, call)

    result = summarize_document(FakeEngine(vague_first), manuscript(), SETTINGS_FAST)  # type: ignore[arg-type]
    assert result.parts[0].source == "regenerated" and "Ana" in result.parts[0].summary


def test_stop_keeps_the_parts_done() -> None:
    engine = FakeEngine(faithful, cancel_after=3)  # Stop while the third chapter is being summarized
    stream = summarize(engine, SummaryRequest(manuscript(), form="synopsis"), SETTINGS_FAST, CancelToken())  # type: ignore[arg-type]
    text = stream.text()
    assert [part.title for part in stream.synopsis.parts] == ["Chapter 1: Lisbon", "Chapter 2: Oslo"]
    assert not stream.synopsis.complete and stream.stats.finish_reason == "cancelled"
    assert "Ana walks through Lisbon." in text and "Ingrid walks through Oslo." in text
    assert "Kyoto" not in text.replace("Chapter 3: Kyoto", "") and "(stopped after 2 of 4 parts)" in text


def test_stop_in_paragraph_form_still_shows_the_parts_done() -> None:
    engine = FakeEngine(faithful, cancel_after=2)
    text = run_task(engine, SummaryRequest(manuscript()), SETTINGS_FAST, CancelToken()).text()  # type: ignore[arg-type]
    assert "## Chapter 1: Lisbon" in text and "(stopped after 1 of 4 parts)" in text


def test_a_part_longer_than_the_context_is_summarized_in_pieces_then_combined() -> None:
    long_body = " ".join(f"Ana walked through Lisbon on day {day}, and Ana kept looking." for day in range(200))
    document = f"Chapter 1: Lisbon\n\n{long_body}\n\nChapter 2: Oslo\n\nIngrid walked through Oslo.\n"
    engine = FakeEngine(faithful)
    request = SummaryRequest(document, form="synopsis", chunk_tokens=500, part_input_words=0)
    stream = summarize(engine, request, SETTINGS_FAST, CancelToken())  # type: ignore[arg-type]
    stream.text()
    lisbon_pieces = [text for text, _ in engine.calls if "Lisbon" in text and "these are the" not in text.lower()]
    assert len(lisbon_pieces) >= 4, "2,200 words in pieces of at most 500 tokens"
    assert any("these are the passages of a chapter" in text.lower() for text, _ in engine.calls)
    assert stream.synopsis.parts[0].summary == "Ana travels through Lisbon." and stream.synopsis.complete
    assert stream.synopsis.parts[0].source == "model"


def test_a_long_part_reaches_the_model_as_its_key_sentences() -> None:
    body = " ".join(f"Ana walked in Lisbon and found item{day} near place{day} in colour{day}." for day in range(100))
    engine = FakeEngine(faithful)
    summarize_document(engine, f"Chapter 1: Lisbon\n\n{body}\n", SETTINGS_FAST)  # type: ignore[arg-type]
    (prompt_text, _settings) = engine.calls[0]
    assert "\nChapter 1: Lisbon\n\nAna walked in Lisbon and found item0 " in prompt_text, "the heading, the opening"
    words = prompt_text.count("Ana walked") * 11
    assert 300 <= words <= 360, f"about part_input_words (350) of the part's 1,200 words, not {words}"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("", "empty"),
        ("   \n\n  ", "empty"),
        ("# One\n\n# Two\n\n# Three\n", "headings but nothing under them"),
    ],
)
def test_bad_input_is_refused_in_words(document: str, message: str) -> None:
    engine = FakeEngine(faithful)
    with pytest.raises(InputError, match=message):
        summarize(engine, SummaryRequest(document), SETTINGS_FAST, CancelToken())  # type: ignore[arg-type]
    assert engine.calls == []


def test_an_unknown_form_is_refused() -> None:
    with pytest.raises(InputError, match="synopsis"):
        summarize(FakeEngine(faithful), SummaryRequest("Text.", form="outline"), SETTINGS_FAST, CancelToken())  # type: ignore[arg-type]


def test_a_huge_single_paragraph_becomes_even_parts() -> None:
    paragraph = "".join(f"Ana walked through Lisbon on day {day}. " for day in range(3000))  # 21,000 words
    engine = FakeEngine(faithful)
    result = summarize_document(engine, paragraph, SETTINGS_FAST)  # type: ignore[arg-type]
    assert len(result.parts) == 14 and [part.title for part in result.parts][:2] == ["Part 1", "Part 2"]
    assert result.complete and all(part.summary == "Ana walks through Lisbon." for part in result.parts)


def test_an_empty_chapter_is_listed_without_a_model_call() -> None:
    document = (
        "Chapter 1: Lisbon\n\nAna walked through Lisbon.\n\nChapter 2: Oslo\n\n"
        "Chapter 3: Kyoto\n\nHaruto walked through Kyoto.\n"
    )
    engine = FakeEngine(faithful)
    result = summarize_document(engine, document, SETTINGS_FAST)  # type: ignore[arg-type]
    assert [(part.title, part.source) for part in result.parts] == [
        ("Chapter 1: Lisbon", "model"),
        ("Chapter 2: Oslo", "empty"),
        ("Chapter 3: Kyoto", "model"),
    ]
    assert len(engine.calls) == 3


# --- the synopsis on the real model ---------------------------------------------------------------------------------

FOUR_CHAPTERS = """Chapter 1: The Lighthouse

Mara Quill kept the lighthouse on Gull Island. Every night Mara climbed the stairs and lit the lamp for the fishing
boats. One stormy night Mara saw a small boat drifting towards the rocks without a light.

Chapter 2: The Rescue

Mara rowed out into the storm and reached the boat. Inside was a boy named Tobin Reed, cold and frightened. Mara
brought Tobin back to the lighthouse and wrapped him in blankets by the fire.

Chapter 3: The Letter

In the morning Tobin gave Mara a wet letter from his father, Elias Reed. The letter asked whoever found Tobin to take
him to the harbour town of Wrenhaven. Mara decided to sail there herself.

Chapter 4: Wrenhaven

Mara and Tobin sailed to Wrenhaven in two days. On the pier Elias Reed was waiting, and he ran to hug his son. Elias
thanked Mara, and Mara sailed home to her lighthouse before dark.
"""


def test_a_synopsis_of_four_chapters_on_the_real_model(engine) -> None:
    """Every title, in order; and no proper noun the manuscript does not have, anywhere in the synopsis."""
    stream = run_task(
        engine, SummaryRequest(FOUR_CHAPTERS, form="synopsis"), SamplerSettings(max_new_tokens=96, seed=11)
    )
    text = stream.text()
    titles = ["Chapter 1: The Lighthouse", "Chapter 2: The Rescue", "Chapter 3: The Letter", "Chapter 4: Wrenhaven"]
    positions = [text.find(f"## {title}") for title in titles]
    assert all(position >= 0 for position in positions) and positions == sorted(positions), text
    assert isinstance(stream, SynopsisStream) and stream.synopsis.complete
    summaries = " ".join(part.summary for part in stream.synopsis.parts) + " " + stream.synopsis.overall
    assert invented_terms(summaries, FOUR_CHAPTERS) == [], text
    known = {word.strip(".,:").lower() for word in FOUR_CHAPTERS.split()}
    assert all(noun.lower().removesuffix("'s") in known for noun in proper_nouns(text)), text
    for part in stream.synopsis.parts:
        assert part.summary.strip() and part.source in {"model", "regenerated", "extractive"}
        assert FOUR_CHAPTERS[part.start :].startswith(part.title)
