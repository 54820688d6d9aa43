"""Task prompts on the real bundled tokenizer: what is kept when text must be dropped, and user templates."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.core.errors import InputError
from assistant.core.prompts import (
    ChatRequest,
    CodeRequest,
    PoemRequest,
    RewriteRequest,
    StoryRequest,
    build_chat,
    build_code,
    build_poem,
    build_rewrite,
    build_story,
    fill,
    load_template,
)

LONG_STORY = " ".join(f"Sentence number {index} of the long saga." for index in range(3000))


def test_story_keeps_memory_note_and_newest_text_when_too_long(engine) -> None:
    measure = engine.measure(256)
    request = StoryRequest(
        LONG_STORY + "\nThe dragon finally spoke.", memory="Mira is a cartographer.", authors_note="Keep it tense."
    )
    prompt = build_story(request, measure)
    assert prompt.text is not None
    assert measure.count_prompt(prompt) <= measure.limit
    assert prompt.text.startswith("Mira is a cartographer.")
    assert "[Author's note: Keep it tense.]" in prompt.text
    assert prompt.text.endswith("The dragon finally spoke.")
    assert "Sentence number 0 " not in prompt.text, "the oldest text is dropped first"


def test_story_places_the_authors_note_a_few_lines_before_the_end(engine) -> None:
    story = "\n".join(f"Line {index}." for index in range(10))
    prompt = build_story(StoryRequest(story, authors_note="Rain falls."), engine.measure(64))
    lines = (prompt.text or "").split("\n")
    assert lines[-4] == "[Author's note: Rain falls.]"
    assert lines[-1] == "Line 9."


def test_chat_keeps_system_prompt_and_newest_message_dropping_oldest_turns(engine) -> None:
    history = []
    for index in range(400):
        history.append({"role": "user", "content": f"Question {index}: tell me about topic {index} in detail."})
        history.append({"role": "assistant", "content": f"Answer {index}: " + "words " * 40})
    history.append({"role": "user", "content": "And the newest question?"})
    measure = engine.measure(512)
    prompt = build_chat(ChatRequest(history, system_prompt="You are a pirate."), measure)
    assert prompt.messages is not None
    assert measure.count_prompt(prompt) <= measure.limit
    assert prompt.messages[0] == {"role": "system", "content": "You are a pirate."}
    assert prompt.messages[-1]["content"] == "And the newest question?"
    assert prompt.messages[1]["role"] == "user", "kept history starts with a question, not an orphan answer"
    assert not any("Question 0:" in message["content"] for message in prompt.messages)
    assert any("Question 399:" in message["content"] for message in prompt.messages)


def test_default_system_prompt_comes_from_the_chat_template(engine) -> None:
    prompt = build_chat(ChatRequest([{"role": "user", "content": "Hi"}]), engine.measure(64))
    assert prompt.messages is not None and "Penwright" in prompt.messages[0]["content"]


def test_rewrite_refuses_a_selection_that_cannot_fit_whole(engine) -> None:
    with pytest.raises(InputError, match="too long for this model"):
        build_rewrite(RewriteRequest(LONG_STORY, "shorter"), engine.measure(256))


def test_rewrite_custom_instruction_is_required_and_used(engine) -> None:
    with pytest.raises(InputError, match="Say how to rewrite"):
        build_rewrite(RewriteRequest("Some text.", "custom"), engine.measure(64))
    prompt = build_rewrite(RewriteRequest("Some text.", "custom", "in the past tense"), engine.measure(64))
    assert prompt.messages is not None and "in the past tense." in prompt.messages[-1]["content"]


def test_code_completion_keeps_the_newest_lines(engine) -> None:
    code = "".join(f"value_{index} = {index}\n" for index in range(6000)) + "def final_function("
    measure = engine.measure(128)
    prompt = build_code(CodeRequest(code, "complete", language="python"), measure)
    assert (prompt.text or "").endswith("def final_function(")
    assert measure.count_prompt(prompt) <= measure.limit


def test_code_prompts_name_the_language_guessed_from_the_file(engine) -> None:
    prompt = build_code(CodeRequest("fn main() {}\n", "explain", filename="main.rs"), engine.measure(64))
    assert prompt.messages is not None and "Rust" in prompt.messages[-1]["content"]


def test_poem_prompt_carries_form_rules_and_style(engine) -> None:
    prompt = build_poem(PoemRequest("the sea", "haiku", "Basho"), engine.measure(64))
    user = (prompt.messages or ())[-1]["content"]
    assert "haiku about the sea" in user and "5, 7 and 5" in user and "Basho" in user


def test_empty_input_is_refused(engine) -> None:
    with pytest.raises(InputError, match="empty"):
        build_story(StoryRequest("   "), engine.measure(64))


def test_user_template_in_config_folder_overrides_the_shipped_one(isolated_profile: Path) -> None:
    override = isolated_profile / "config" / "prompts" / "translate.txt"
    override.parent.mkdir(parents=True)
    override.write_text("[user]\nPlease put this into {language}: {text}\n", encoding="utf-8")
    template = load_template("translate")
    assert template == {"user": "Please put this into {language}: {text}"}
    assert "system" in load_template("rewrite"), "other tasks keep the shipped template"


def test_fill_leaves_unknown_fields_and_braces_alone() -> None:
    assert fill("{text} {unknown} {{x}} code{", text="hi") == "hi {unknown} {{x}} code{"


def test_a_missing_template_file_is_reported_in_a_sentence(monkeypatch, tmp_path: Path) -> None:
    from assistant.core import resources
    from assistant.core.errors import PenwrightError

    monkeypatch.setattr(resources, "resource_root", lambda: tmp_path)
    with pytest.raises(PenwrightError, match="resources/prompts/poem.txt is missing .* reinstall Penwright"):
        load_template("poem")
