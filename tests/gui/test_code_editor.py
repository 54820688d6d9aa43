"""The code editor's indentation rules as plain functions: what Enter inserts, where a closing bracket goes."""

from __future__ import annotations

import pytest

from assistant.gui.panes.code_editor import code_part, line_break_for, matching_opener_indent

pytestmark = pytest.mark.gui


@pytest.mark.parametrize(
    ("before", "after", "language", "expected"),
    [
        ("def fibonacci(n):", "", "python", ("\n    ", "")),
        ("    if n < 2:  # small", "", "python", ("\n        ", "")),
        ("    return n", "", "python", ("\n", "")),
        ("        pass", "", "python", ("\n    ", "")),
        ("    raise ValueError(n)", "", "python", ("\n", "")),
        ("    returned = 1", "", "python", ("\n    ", "")),  # "returned" does not end the block
        ("    return n", " + 1", "python", ("\n    ", "")),  # mid-line: keep the indentation
        ("\tif x:", "", "python", ("\n\t\t", "")),  # tabs stay tabs
        ('print("label:")', "", "python", ("\n", "")),
        ("values = compute(", "", "python", ("\n    ", "")),
        ("int main(void) {", "}", "c", ("\n    ", "\n")),
        ("  const a = [", "]", "javascript", ("\n      ", "\n  ")),
        ("if (x) { // start", "", "javascript", ("\n    ", "")),
        ("case 1:", "", "javascript", ("\n", "")),  # a colon opens no block outside Python
        ("Remember:", "", "", ("\n", "")),
        ("    plain", "", "", ("\n    ", "")),
    ],
)
def test_enter_inserts_the_indentation_the_code_calls_for(
    before: str, after: str, language: str, expected: tuple[str, str]
) -> None:
    assert line_break_for(before, after, language) == expected


def test_a_closing_bracket_finds_the_line_that_opened_it() -> None:
    text = "function f() {\n    if (x) {\n        call(a, (b));\n"
    assert matching_opener_indent(text, "}") == "    "
    assert matching_opener_indent(text + "    }\n", "}") == ""
    assert matching_opener_indent("no brackets here\n", "}") is None


def test_comments_are_cut_outside_strings_only() -> None:
    assert code_part("url = 'http://x'  // note", "javascript") == "url = 'http://x'"
    assert code_part('s = "# not a comment"  # a comment', "python") == 's = "# not a comment"'
