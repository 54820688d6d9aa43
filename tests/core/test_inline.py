"""``core.inline`` is a deprecated shim: its names must give what the rulebook gives.

The rules themselves are tested in tests/core/test_completion_rules.py. Delete this file with the shim once
gui/panes/ghost_text.py imports from ``core.completion_rules``.
"""

from __future__ import annotations

import pytest

from assistant.core.completion_rules import Cursor, cut, should_suggest
from assistant.core.inline import CodeContext, cut_code, should_suggest_code

CASES = [
    ("def fibonacci(n):\n", "", "def fibonacci(n):\n    return n\n", True),
    ("def add(a, b):\n    ", "\n\nprint(add(1, 2))\n", "x = 1\n    y = ", False),
    ("total = compute(", ")\n", "1, 2\nprint('more')", False),
]


@pytest.mark.parametrize(("prefix", "suffix", "generated", "final"), CASES)
def test_cut_code_is_the_rulebook(prefix: str, suffix: str, generated: str, final: bool) -> None:
    verdict = cut(generated, Cursor.from_text(prefix, suffix), "code", final)
    assert cut_code(generated, CodeContext.from_text(prefix, suffix), final) == (verdict.text, verdict.stop)


def test_code_context_is_the_cursor() -> None:
    context = CodeContext.from_text("x = 1\ncall(", ")\ny = 2\n")
    assert context == Cursor.from_text("x = 1\ncall(", ")\ny = 2\n")
    assert (context.line_prefix, context.line_suffix, context.mid_line) == ("call(", ")", True)
    assert (context.previous_line, context.next_line) == ("x = 1", "y = 2")


@pytest.mark.parametrize(("prefix", "suffix"), [("call(", ")"), ("x = ", "some_function(argument)")])
def test_should_suggest_code_is_the_rulebook(prefix: str, suffix: str) -> None:
    context = CodeContext.from_text(prefix, suffix)
    assert should_suggest_code(context) == should_suggest(context, "code")
