"""The stop rules of inline suggestions, one by one, as a programmer or writer would notice them."""

from __future__ import annotations

from assistant.core.inline import (
    MAX_CODE_LINES,
    CodeContext,
    cut_code,
    cut_prose,
    keep_code_suggestion,
    should_suggest_code,
)

FUNCTION_START = "def add(a, b):\n    "
BELOW = "\n\nprint(add(1, 2))\n"


def context(prefix: str, suffix: str = "") -> CodeContext:
    return CodeContext.from_text(prefix, suffix)


def test_mid_line_cursor_gets_a_single_line() -> None:
    ctx = context("total = compute(", ")\nprint(total)\n")
    assert ctx.mid_line
    assert cut_code("1, 2", ctx) == ("1, 2", False)
    assert cut_code("1, 2\nprint('more')", ctx) == ("1, 2", True)


def test_stops_at_a_line_indented_less_than_the_block() -> None:
    text, stop = cut_code("result = a + b\n    return result\nprint('outside')\n", context(FUNCTION_START, BELOW))
    assert stop and text == "result = a + b\n    return result"


def test_stops_at_a_blank_line_after_a_complete_block() -> None:
    text, stop = cut_code("return a + b\n\n    # more?\n", context(FUNCTION_START, BELOW))
    assert stop and text == "return a + b"


def test_stops_where_the_model_retypes_the_text_below_the_cursor() -> None:
    ctx = context("values = [\n    1,\n    2,\n", "]\nprint(values)\n")
    text, stop = cut_code("    3,\n]\n", ctx)
    assert stop and text == "    3,"


def test_stops_at_the_line_limit() -> None:
    body = "".join(f"x{index} = {index}\n    " for index in range(MAX_CODE_LINES + 4))
    text, stop = cut_code(body, context(FUNCTION_START))
    assert stop and len(text.split("\n")) == MAX_CODE_LINES


def test_an_unfinished_last_line_is_kept_while_streaming_and_judged_at_the_end() -> None:
    ctx = context(FUNCTION_START, BELOW)
    assert cut_code("x = 1\n    y = ", ctx) == ("x = 1\n    y = ", False)
    assert cut_code("x = 1\nprint(", ctx, final=True) == ("x = 1", True)


def test_a_suggestion_on_a_blank_indented_line_does_not_start_with_a_line_break() -> None:
    assert cut_code("\n    return x\n", context("def f(x):\n    "), final=True) == ("return x", True)


def test_empty_whitespace_and_repeated_suggestions_are_dropped() -> None:
    ctx = context("x = 1\n", "\ny = 2\n")
    assert not keep_code_suggestion("   \n  ", ctx)
    assert not keep_code_suggestion("x = 1", ctx), "repeats the line above"
    assert not keep_code_suggestion("y = 2", ctx), "repeats the line below"
    assert keep_code_suggestion("z = 3", ctx)


def test_no_automatic_code_suggestion_with_text_right_of_the_cursor() -> None:
    assert should_suggest_code(context("call(", ")"))
    assert should_suggest_code(context("call(", "));"))
    assert not should_suggest_code(context("x = ", "some_function(argument)"))


def test_prose_finishes_the_sentence() -> None:
    assert cut_prose(" walked into the old library and sat down. Then she") == (
        " walked into the old library and sat down.",
        True,
    )


def test_prose_with_a_very_short_ending_may_take_one_more_sentence() -> None:
    assert cut_prose(" home. She slept until noon. Then") == (" home. She slept until noon.", True)


def test_prose_never_runs_into_a_new_paragraph() -> None:
    assert cut_prose(" and then it was over\n\nChapter 2") == (" and then it was over", True)


def test_prose_waits_while_the_sentence_is_unfinished() -> None:
    assert cut_prose(" and the wind") == (" and the wind", False)
    assert cut_prose(" and the wind", final=True) == (" and the wind", True)
