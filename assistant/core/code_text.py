"""Pure text logic of the code pane (no Qt): pulling code out of a fenced answer and shaping a fix like the text it
replaces.

Where a completion ends is :mod:`assistant.core.completion_rules`; guessing a language is
:func:`assistant.core.languages.guess_language`.
"""

from __future__ import annotations

import difflib
import os

from assistant.core.completion_rules import leading_whitespace

__all__ = ["code_lines_so_far", "fenced_code", "final_code", "fit_replacement", "unified_diff_text"]


# --- what the model wrote ---------------------------------------------------------------------------------------


def fenced_code(answer: str) -> tuple[str | None, bool]:
    """The code inside the answer's first ``` fence (so far), and whether the fence has closed.

    None while no fence has opened: the answer may still be an introduction ("Here is the code:").
    """
    lines = answer.split("\n")
    for index, line in enumerate(lines):
        if not line.lstrip().startswith("```"):
            continue
        body: list[str] = []
        for inner in lines[index + 1 :]:
            if inner.lstrip().startswith("```"):
                return "\n".join(body), True
            body.append(inner)
        return "\n".join(body), False
    return None, False


def code_lines_so_far(answer: str, final: bool) -> tuple[list[str], bool]:
    """The lines of code in a streamed answer that are certain so far, and whether the code is complete.

    The first fenced block is the code; an answer without any fence is all code once it has ended. A line still
    arriving is held back, and so are blank lines until code follows them, so the text only ever grows.
    """
    code, closed = fenced_code(answer)
    if code is None:
        if not final:
            return [], False
        code, closed = answer, True
    lines = code.split("\n")
    if not (closed or final):
        lines = lines[:-1]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return lines, closed or final


def final_code(answer: str) -> str:
    """The code of a finished answer: its first fenced block, or the whole answer when it has none."""
    code, _closed = fenced_code(answer)
    return (answer if code is None else code).strip("\n")


def _common_indent(text: str) -> str:
    indents = [leading_whitespace(line) for line in text.split("\n") if line.strip()]
    return os.path.commonprefix(indents) if indents else ""


def fit_replacement(original: str, code: str) -> str:
    """The model's code shaped like the text it replaces: the same indentation and surrounding blank lines."""
    body = code.strip("\n")
    margin = _common_indent(original)
    if margin and not _common_indent(body):
        body = "\n".join(margin + line if line.strip() else line for line in body.split("\n"))
    leading = original[: len(original) - len(original.lstrip("\n"))]
    trailing = original[len(original.rstrip()) :]
    return leading + body + trailing


def unified_diff_text(old: str, new: str, name: str) -> str:
    lines = difflib.unified_diff(
        old.splitlines(), new.splitlines(), fromfile=f"a/{name}", tofile=f"b/{name}", lineterm=""
    )
    return "\n".join(lines)
