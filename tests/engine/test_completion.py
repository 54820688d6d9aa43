"""Inline completion on the engine side: FIM prompts per model family, KV reuse, the LRU, and the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from assistant.core.completion_rules import Cursor, cut
from assistant.engine import completion
from assistant.engine.completion import (
    Candidate,
    InlineCompleter,
    InlineRequest,
    best_candidate,
    detect_fim,
    following_lines,
    rerank_applies,
)
from assistant.engine.generate import CancelToken

FAMILIES = {
    "qwen": ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    "starcoder": ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    "codellama": ("▁<PRE>", "▁<SUF>", "▁<MID>"),
    "deepseek": ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),
}


def small_tokenizer(special: tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
    """A word-level tokenizer built in the test: no download, and every word is one token."""
    words = ["[UNK]", "def", "add", "(", "a", ",", "b", ")", ":", "return", "+", "print", "1", "2"]
    backend = Tokenizer(models.WordLevel({word: index for index, word in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    if special:
        tokenizer.add_special_tokens({"additional_special_tokens": list(special)})
    return tokenizer


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fim_prompt_uses_the_models_own_tokens(family: str) -> None:
    prefix_token, suffix_token, middle_token = FAMILIES[family]
    tokenizer = small_tokenizer(FAMILIES[family])
    fim = detect_fim(tokenizer)
    assert fim is not None and fim.format.family == family
    completer = InlineCompleter(SimpleNamespace(tokenizer=tokenizer))  # type: ignore[arg-type]
    ids = completer.prompt_ids(InlineRequest("code", "def add ( a , b ) : return", "print ( add ( 1 , 2 ) )"))
    vocab = tokenizer.get_vocab()
    assert ids[0] == vocab[prefix_token] and ids[-1] == vocab[middle_token]
    middle = ids.index(vocab[suffix_token])
    assert tokenizer.decode(ids[1:middle]) == "def add ( a , b ) : return"
    assert tokenizer.decode(ids[middle + 1 : -1]) == "print ( add ( 1 , 2 ) )"


def test_a_model_without_fim_tokens_continues_the_prefix() -> None:
    tokenizer = small_tokenizer()
    assert detect_fim(tokenizer) is None
    completer = InlineCompleter(SimpleNamespace(tokenizer=tokenizer))  # type: ignore[arg-type]
    ids = completer.prompt_ids(InlineRequest("code", "def add ( a , b ) :", "print ( 1 )"))
    assert tokenizer.decode(ids) == "def add ( a , b ) :", "the suffix is not in a plain-continuation prompt"


def test_prefix_and_suffix_budgets_keep_the_text_nearest_the_cursor() -> None:
    tokenizer = small_tokenizer(FAMILIES["qwen"])
    completer = InlineCompleter(SimpleNamespace(tokenizer=tokenizer), prefix_tokens=4, suffix_tokens=3)  # type: ignore[arg-type]
    ids = completer.prompt_ids(InlineRequest("code", "def add ( a , b ) : return a", "+ b print ( 1 )"))
    vocab = tokenizer.get_vocab()
    middle = ids.index(vocab["<|fim_suffix|>"])
    assert tokenizer.decode(ids[1:middle]) == ") : return a"
    assert tokenizer.decode(ids[middle + 1 : -1]) == "+ b print"


def test_prose_suggestion_on_the_real_model(engine) -> None:
    completer = InlineCompleter(engine)
    result = completer.suggest(InlineRequest("prose", "The rain had not stopped for three days when the stranger"))
    assert result.text.strip()
    assert "\n" not in result.text, "a prose suggestion stays in the paragraph"


def test_code_suggestion_on_the_real_model_follows_the_stop_rules(engine) -> None:
    completer = InlineCompleter(engine)
    prefix = 'import os\n\n\ndef list_python_files(folder):\n    """Return the .py files in folder."""\n    '
    result = completer.suggest(InlineRequest("code", prefix, "\n\nprint(list_python_files('.'))\n"))
    assert result.text.strip()
    assert all(not line or line.startswith("    ") for line in result.text.split("\n")[1:]), "stays in the block"


def test_one_more_character_reuses_the_kv_cache(engine) -> None:
    """After one more typed character, prefill runs a few tokens, not the whole 1,000-character context."""
    context = Path(__file__).read_text(encoding="utf-8")[:1000]
    completer = InlineCompleter(engine)
    first = completer.suggest(InlineRequest("code", context))
    second = completer.suggest(InlineRequest("code", context + "x"))
    assert first.prefill_tokens == first.prompt_tokens > 200
    assert second.reused_tokens >= first.prompt_tokens - 2
    assert second.prefill_tokens <= 0.2 * first.prefill_tokens


def test_the_same_text_is_answered_from_the_lru(engine) -> None:
    completer = InlineCompleter(engine)
    request = InlineRequest("prose", "Once upon a time, in a village by the sea, there lived", pane="editor")
    fresh = completer.suggest(request)
    again = completer.suggest(request)
    assert again.from_cache and again.text == fresh.text
    shown: list[str] = []
    completer.suggest(request, on_text=shown.append)
    assert shown == ([fresh.text] if fresh.text else [])


def test_cancel_stops_a_suggestion(engine) -> None:
    cancel = CancelToken()
    cancel.cancel()
    result = InlineCompleter(engine).suggest(InlineRequest("prose", "It was a dark and stormy"), cancel)
    assert result.cancelled and result.text == ""


def test_streamed_suggestion_grows_to_the_final_text(engine) -> None:
    seen: list[str] = []
    result = InlineCompleter(engine).suggest(
        InlineRequest("prose", "She opened the letter and read the first line:"), on_text=seen.append
    )
    assert seen and seen[-1] == result.text
    assert result.first_text_ms > 0


@pytest.mark.slow  # a child process loads the model
def test_complete_command_prints_only_the_suggestion(cli_env, tmp_path: Path) -> None:
    prefix = tmp_path / "prefix.py"
    prefix.write_text("def add(a, b):\n    ", encoding="utf-8")
    suffix = tmp_path / "suffix.py"
    suffix.write_text("\n\nprint(add(1, 2))\n", encoding="utf-8")
    args = ["complete", "--mode", "code", "--prefix-file", str(prefix), "--suffix-file", str(suffix)]
    result = subprocess.run(
        [sys.executable, "-m", "assistant", *args], capture_output=True, env=cli_env, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr.decode()
    suggestion = result.stdout.decode()
    assert suggestion.strip() and not suggestion.startswith("penwright")

    from assistant.engine.session import EngineSession  # the GUI's path gives the same text

    assert suggestion == _gui_path_suggestion(EngineSession, cli_env, prefix, suffix)


def _gui_path_suggestion(session_class, cli_env, prefix: Path, suffix: Path) -> str:
    import os

    from assistant.engine.generate import Engine
    from assistant.engine.models import load_model

    previous = os.environ.get("PENWRIGHT_PROFILE")
    os.environ["PENWRIGHT_PROFILE"] = cli_env["PENWRIGHT_PROFILE"]
    try:
        session = session_class(Engine(load_model(device="cpu")))
    finally:
        if previous is not None:
            os.environ["PENWRIGHT_PROFILE"] = previous
    request = InlineRequest("code", prefix.read_text(encoding="utf-8"), suffix.read_text(encoding="utf-8"))
    return session.suggest(request, CancelToken()).text


@pytest.mark.slow
def test_after_a_def_line_and_enter_the_suggestion_does_not_repeat_the_def_line(engine, monkeypatch) -> None:
    """Seen in the window: ``def fibonacci(n):`` + Enter, and the ghost text began with ``def fibonacci(n):``."""
    import assistant.engine.completion as completion

    generated: list[str] = []

    def spy(text: str, *args: object, **kwargs: object) -> object:
        generated.append(text)
        return cut(text, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(completion, "cut", spy)
    seen: list[str] = []
    result = InlineCompleter(engine).suggest(InlineRequest("code", "def fibonacci(n):\n", ""), on_text=seen.append)

    assert any(text.startswith("def fibonacci(n):") for text in generated), "the model re-types the def line"
    assert result.text.strip(), "what follows the repeat is suggested"
    assert result.text.startswith("    "), f"the suggestion is the indented body: {result.text!r}"
    assert all("def fibonacci" not in text for text in [result.text, *seen]), "not even for a moment"


def test_spaces_typed_at_the_cursor_are_not_suggested_again(engine) -> None:
    completer = InlineCompleter(engine)
    code = completer.suggest(InlineRequest("code", "def add(a, b):\n    ", "\n\nprint(add(1, 2))\n"))
    assert code.text.startswith("return"), repr(code.text)
    prose = completer.suggest(InlineRequest("prose", "The rain had not stopped for three days when the "))
    assert prose.text and not prose.text.startswith(" "), repr(prose.text)


def test_a_long_prefix_is_cut_in_steps_so_its_start_stays_put() -> None:
    """Typing on at the end of a long document must not shift the prompt's start (that would defeat KV reuse)."""
    tokenizer = small_tokenizer()
    completer = InlineCompleter(SimpleNamespace(tokenizer=tokenizer), prefix_tokens=300)  # type: ignore[arg-type]
    words = ["def", "add", "(", "a", ",", "b", ")", ":", "return", "a", "+", "b", "print", "(", "1", ")"]
    document = " ".join(words[index % len(words)] for index in range(1000))
    first = completer.prompt_ids(InlineRequest("prose", document))
    later = completer.prompt_ids(InlineRequest("prose", document + " return a"))
    assert len(first) <= 300 and len(later) <= 300
    assert later[: len(first) - 2] == first[: len(first) - 2], "the same start: only the end grew"


# --- reranking line candidates with the suffix (models without FIM tokens) -----------------------------------------


def test_the_candidate_likeliest_with_the_lines_below_wins() -> None:
    candidates = [Candidate(" return 0", -3.0, -20.0), Candidate(" else:", -5.0, -1.0), Candidate(" pass", -1.0, -9.0)]
    best = best_candidate(candidates)
    assert best is not None and best.raw == " else:"
    assert best_candidate([]) is None
    assert best_candidate([Candidate("a", -1.0, -1.0), Candidate("b", -1.5, -0.5)]).raw == "a"  # type: ignore[union-attr]


def test_the_following_lines_skip_the_cursors_line_and_keep_blank_lines() -> None:
    assert following_lines("\n        return -1\n\n    x = 2\n    y = 3\n") == "        return -1\n\n    x = 2"
    assert following_lines("rest of line\n  a\n") == "  a\n"
    assert following_lines("") == ""


def test_reranking_is_for_single_line_code_infill_without_fim() -> None:
    def applies(prefix: str, suffix: str, mode: str = "code", fim: bool = False) -> bool:
        return rerank_applies(InlineRequest(mode, prefix, suffix), Cursor.from_text(prefix, suffix), fim)

    assert applies("if x:\n    y()\n", "\n    z()\n")  # empty line
    assert applies("if x:\n    y()\n    ", "\n    z()\n")  # only indentation
    assert applies("if x:\n    y(", "\n    z()\n")  # end of a non-empty line
    assert not applies("if x:\n    y(", ")\n    z()\n"), "text right of the cursor"
    assert not applies("if x:\n    ", "\n\n  \n"), "nothing below to rank with"
    assert not applies("if x:\n    ", "\n    z()\n", fim=True)
    assert not applies("The rain ", "\nfell.\n", mode="prose")


@pytest.mark.slow
def test_the_lines_below_pick_the_else_branch_on_the_real_model(engine, monkeypatch) -> None:
    prefix, suffix = "def sign(x):\n    if x > 0:\n        return 1\n    ", "\n        return -1\n"
    result = InlineCompleter(engine).suggest(InlineRequest("code", prefix, suffix))
    assert result.text == "else:"
    assert len(result.details["candidates"]) == completion.RERANK_CANDIDATES
    monkeypatch.setattr(completion, "rerank_applies", lambda *args: False)
    plain = InlineCompleter(engine).suggest(InlineRequest("code", prefix, suffix))
    assert plain.text.strip() != "else:", "without the suffix the model does not see the else branch"


@pytest.mark.slow
def test_cancel_stops_between_candidates(engine, monkeypatch) -> None:
    completer = InlineCompleter(engine)
    cancel = CancelToken()
    written: list[str] = []
    real = completer._candidate

    def first_then_cancel(*args, **kwargs):  # type: ignore[no-untyped-def]
        candidate = real(*args, **kwargs)
        written.append(candidate.raw if candidate else "")
        cancel.cancel()
        return candidate

    monkeypatch.setattr(completer, "_candidate", first_then_cancel)
    request = InlineRequest("code", "def sign(x):\n    if x > 0:\n        return 1\n    ", "\n        return -1\n")
    result = completer.suggest(request, cancel=cancel)
    assert result.cancelled and result.text == "" and len(written) == 1
    assert completer.cached(request) is None
    assert completer._prefix.cache.get_seq_length() == len(completer._prefix.tokens) == result.prompt_tokens
