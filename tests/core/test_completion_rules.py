"""The completion rulebook, one row per rule: the text around the cursor, what the model wrote, what is shown."""

from __future__ import annotations

import pytest

from assistant.core.completion_rules import (
    MAX_CODE_LINES,
    Cursor,
    cut,
    indent_width,
    leading_whitespace,
    should_suggest,
)

FUNCTION_START = "def add(a, b):\n    "
BELOW = "\n\nprint(add(1, 2))\n"
FIBONACCI_BODY = "    if n <= 1:\n        return n\n    else:\n        return fibonacci(n - 1) + fibonacci(n - 2)"
LONG_BODY = "".join(f"x{index} = {index}\n    " for index in range(MAX_CODE_LINES + 4))


def row(name: str, *values: object) -> object:
    """One table row: its name is the test id."""
    return pytest.param(*values, id=name)


# name, prefix (before the cursor), suffix (after it), generated (complete), expected (shown after the cursor)
CODE_ROWS = [
    row("mid-line: one line", "total = compute(", ")\nprint(total)\n", "1, 2\nprint('more')", "1, 2"),
    row("mid-line: the re-typed rest of the line goes", "print(", ")\n", "f(x))", "f(x)"),
    row("mid-line: a bracket the suggestion needs stays", "print(", ")\n", "f(x)", "f(x)"),
    row("mid-line: only the rest of the line: nothing", "call(a", ")\n", ")", ""),
    row("blank line: a leading line break goes", "def f(x):\n    ", "", "\n    return x\n", "return x"),
    row(
        "a line indented less than the block ends it",
        FUNCTION_START,
        BELOW,
        "result = a + b\n    return result\nprint('outside')\n",
        "result = a + b\n    return result",
    ),
    row("one blank line after code ends it", FUNCTION_START, BELOW, "return a + b\n\n    # more?\n", "return a + b"),
    row(
        "a block opened at the cursor's line is filled, no more",
        "def f(ready):\n    if ready:",
        "",
        "\n        return 1\n    return 2\n",
        "\n        return 1",
    ),
    row(
        "closing bracket at the opener's indentation is kept",
        "function add(a, b) {\n    return ",
        "",
        "a + b;\n}\n\nfunction more() {",
        "a + b;\n}",
    ),
    row(
        "closing bracket already below the cursor is not repeated",
        "function add(a, b) {\n    return ",
        "\n}\n",
        "a + b;\n}\n",
        "a + b;",
    ),
    row(
        "no closing bracket while the block goes on below",
        "function f() {\n    let x = 1;",
        "\n    return x;\n}\n",
        "\n    let y = 2;\n}\n",
        "\n    let y = 2;",
    ),
    row(
        "closing bracket of a call opened at the cursor",
        "    result = compute(",
        "",
        "\n        a,\n        b,\n    )\n    return result\n",
        "\n        a,\n        b,\n    )",
    ),
    row("a Markdown fence ends it", FUNCTION_START, "", "return a + b\n```\nThat is all.", "return a + b"),
    row(
        "stops where it re-types the line below",
        "def f():\n    x = 1\n    ",
        "\n    return x\n",
        "y = 2\n    return x\n",
        "y = 2",
    ),
    row("a first line that is the line below: nothing", "x = 1\n", "\ny = 2\n", "y = 2", ""),
    row(
        "repeat above: def + Enter (the bug)",
        "def fibonacci(n):\n",
        "",
        "def fibonacci(n):\n" + FIBONACCI_BODY + "\n\n",
        FIBONACCI_BODY,
    ),
    row(
        "repeat above: on an indented blank line",
        "def fibonacci(n):\n    ",
        "",
        "def fibonacci(n):\n    if n <= 1:\n        return n\n",
        "if n <= 1:\n        return n",
    ),
    row(
        "repeat above: after the line's end",
        "def fibonacci(n):",
        "",
        "\ndef fibonacci(n):\n    return n\n",
        "\n    return n",
    ),
    row(
        "repeat above: two lines",
        'def area(r):\n    """Area of a circle."""\n',
        "",
        'def area(r):\n    """Area of a circle."""\n    return 3.14159 * r * r\n',
        "    return 3.14159 * r * r",
    ),
    row("repeat above and nothing else: nothing", "x = compute()\n", "", "x = compute()\n", ""),
    row(
        "a short line above may be typed again", "function f() {\n    if (a) {\n        go();\n    }\n", "", "}\n", "}"
    ),
    row("the same line a third time is a loop", FUNCTION_START, "", "x = 1\n    x = 1\n    x = 1\n    y = 2", "x = 1"),
    row("line limit", FUNCTION_START, "", LONG_BODY, "\n    ".join(LONG_BODY.split("\n    ")[:MAX_CODE_LINES])),
    row("tabs: a tab is a 4-column step", "def f():\n\tx = 1\n", "", "    y = 2\n\tz = 3\nw = 4", "    y = 2\n\tz = 3"),
    row(
        "tabs: a tab-indented block ends",
        "def f():\n\tif x:\n\t\t",
        "",
        "a = 1\n\t\tb = 2\n\treturn\n",
        "a = 1\n\t\tb = 2",
    ),
    row(
        "re-typing the start of the suffix is cut",
        "def f():\n    ",
        "\n        print('the values are ready')\n",
        "values = load()\n    print('the values are ready')\n",
        "values = load()",
    ),
    row("whitespace only: nothing", FUNCTION_START, "", "   \n  ", ""),
]

PROSE_ROWS = [
    row(
        "finishes the sentence",
        "She",
        "",
        " walked into the old library and sat down. Then she",
        " walked into the old library and sat down.",
    ),
    row(
        "a very short ending takes one more sentence",
        "He went",
        "",
        " home. She slept until noon. Then",
        " home. She slept until noon.",
    ),
    row(
        "never runs into a new paragraph",
        "It rained",
        "",
        " and then it was over\n\nChapter 2",
        " and then it was over",
    ),
    row("a sentence without its end is kept whole at the end", "She", "", " and the wind", " and the wind"),
    row(
        "re-typing the text after the cursor is cut",
        "The rain",
        " and the wind howled over the moor all night long.",
        " fell and the wind howled over the moor all night",
        " fell",
    ),
    row("line breaks only: nothing", "The end.", "", "\n\n\n", ""),
]

# name, prefix, suffix, generated (still arriving), expected shown, expected stop
STREAMING_ROWS = [
    row(
        "an unfinished line is shown as it arrives", FUNCTION_START, BELOW, "x = 1\n    y = ", "x = 1\n    y = ", False
    ),
    row("a blank line after code stops at once", FUNCTION_START, BELOW, "return a + b\n\n", "return a + b", True),
    row("a line that may re-type the line above is held back", "def fibonacci(n):\n", "", "def fibo", "", False),
    row(
        "after the repeat the body streams", "def fibonacci(n):\n", "", "def fibonacci(n):\n    if n", "    if n", False
    ),
    row("a line that may re-type the line below is held back", "x = 1\n", "\ny = 2\n", "y =", "", False),
    row("mid-line: the line shows as it arrives", "total = compute(", ")\n", "1, ", "1, ", False),
]


def shown(prefix: str, suffix: str, generated: str, mode: str = "code", final: bool = True) -> str:
    return cut(generated, Cursor.from_text(prefix, suffix), mode, final).text


@pytest.mark.parametrize(("prefix", "suffix", "generated", "expected"), CODE_ROWS)
def test_code_rule(prefix: str, suffix: str, generated: str, expected: str) -> None:
    assert shown(prefix, suffix, generated) == expected


@pytest.mark.parametrize(("prefix", "suffix", "generated", "expected"), PROSE_ROWS)
def test_prose_rule(prefix: str, suffix: str, generated: str, expected: str) -> None:
    assert shown(prefix, suffix, generated, mode="prose") == expected


@pytest.mark.parametrize(("prefix", "suffix", "generated", "expected", "stop"), STREAMING_ROWS)
def test_while_streaming(prefix: str, suffix: str, generated: str, expected: str, stop: bool) -> None:
    verdict = cut(generated, Cursor.from_text(prefix, suffix), "code", final=False)
    assert (verdict.text, verdict.stop) == (expected, stop)


def test_prose_waits_for_the_end_of_the_sentence_while_streaming() -> None:
    verdict = cut(" and the wind", Cursor.from_text("She", ""), "prose", final=False)
    assert (verdict.text, verdict.stop) == (" and the wind", False)


@pytest.mark.parametrize(("prefix", "suffix", "generated", "expected"), CODE_ROWS)
def test_the_shown_text_is_one_piece_of_the_generated_text(
    prefix: str, suffix: str, generated: str, expected: str
) -> None:
    """A caller that inserts text as it streams can place it by ``start``: nothing is stitched together."""
    verdict = cut(generated, Cursor.from_text(prefix, suffix), "code", final=True)
    assert generated[verdict.start : verdict.start + len(verdict.text)] == verdict.text


def test_the_line_limit_is_the_callers_choice() -> None:
    cursor = Cursor.from_text(FUNCTION_START, "")
    assert len(cut(LONG_BODY, cursor, "code", final=True).text.split("\n")) == MAX_CODE_LINES
    assert len(cut(LONG_BODY, cursor, "code", final=True, max_lines=None).text.split("\n")) == MAX_CODE_LINES + 4


@pytest.mark.parametrize(
    ("line", "width"),
    [("", 0), ("x", 0), ("    x", 4), ("\tx", 4), ("\t\tx", 8), ("  \tx", 4), ("   \t x", 5), ("    ", 4)],
)
def test_indentation_counts_tabs_to_the_next_tab_stop(line: str, width: int) -> None:
    """As the editor draws them: ``"  \\t"`` reaches column 4 (the old ghost-text rule said 6)."""
    assert indent_width(line) == width


def test_leading_whitespace_is_spaces_and_tabs() -> None:
    assert leading_whitespace(" \t x = 1") == " \t "
    assert leading_whitespace("x") == ""


def test_automatic_code_suggestions_only_near_the_end_of_the_line() -> None:
    assert should_suggest(Cursor.from_text("call(", ")"), "code")
    assert should_suggest(Cursor.from_text("call(", "));"), "code")
    assert not should_suggest(Cursor.from_text("x = ", "some_function(argument)"), "code")
    assert should_suggest(Cursor.from_text("The ", "cat sat on the mat."), "prose")
