"""Every task the app offers gives real text from the bundled model; long texts are summarized in parts."""

from __future__ import annotations

import pytest

from assistant.core.prompts import (
    ChatRequest,
    CodeRequest,
    PoemRequest,
    RewriteRequest,
    StoryRequest,
    SummaryRequest,
    TranslateRequest,
)
from assistant.core.settings import SamplerSettings
from assistant.engine.tasks import run_task

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
    parts = [stage for stage in progress if stage.startswith("Summarizing part")]
    assert len(parts) >= 10 and parts[-1].endswith(f"of {len(parts)}")
    assert progress[-1] == "Combining the summaries"
    assert stream.stats.prompt_tokens > engine.count_tokens(text), "every word of the text was read"
