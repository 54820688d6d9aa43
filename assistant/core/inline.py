"""Rules for inline (ghost-text) suggestions: when to stop and which suggestions to drop. Pure functions, no Qt.

They follow what Continue, Tabby and llama.vscode do in code: a single line when the cursor is mid-line;
otherwise stop at a line indented less than the cursor's block, at a blank line after a complete block, at a line
that repeats the text below the cursor, or at a line limit. In prose: finish the sentence, a few at most, and never
run into a new paragraph.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_CODE_LINES = 8
MAX_PROSE_SENTENCES = 2
MIN_SENTENCE_WORDS = 4
"""A suggestion that only ends the current sentence in fewer words may run on into the next one."""
MAX_RIGHT_CHARS_FOR_CODE = 3
"""In code, no automatic suggestion when more than this many characters stand right of the cursor on its line."""

_SENTENCE_END = re.compile(r"[.!?…](?:[\"'”’)\]]*)(?=\s)")


def indentation(line: str) -> int:
    """Width of a line's leading whitespace, tabs counted as 4."""
    width = 0
    for char in line:
        if char == " ":
            width += 1
        elif char == "\t":
            width += 4
        else:
            break
    return width


@dataclass(frozen=True)
class CodeContext:
    """What the stop rules need to know about the cursor's surroundings."""

    line_prefix: str
    """The text of the cursor's line left of the cursor."""
    line_suffix: str
    """The text of the cursor's line right of the cursor."""
    next_line: str
    """The first non-blank line below the cursor's line ("" when none)."""
    previous_line: str
    """The last non-blank line above the cursor's line ("" when none)."""

    @classmethod
    def from_text(cls, prefix: str, suffix: str) -> CodeContext:
        line_prefix = prefix.rsplit("\n", 1)[-1]
        line_suffix = suffix.split("\n", 1)[0]
        below = suffix.split("\n")[1:]
        above = prefix.split("\n")[:-1]
        next_line = next((line for line in below if line.strip()), "")
        previous_line = next((line for line in reversed(above) if line.strip()), "")
        return cls(line_prefix, line_suffix, next_line, previous_line)

    @property
    def mid_line(self) -> bool:
        return bool(self.line_suffix.strip())


def should_suggest_code(context: CodeContext) -> bool:
    """Automatic suggestions only where the line's end is near: typing mid-word in a long line is left alone."""
    return len(context.line_suffix.strip()) <= MAX_RIGHT_CHARS_FOR_CODE


def cut_code(text: str, context: CodeContext, final: bool = False) -> tuple[str, bool]:
    """Trim a (partial) code suggestion by the stop rules; returns the text to keep and whether to stop now.

    Called as text streams in, so only complete lines are judged until ``final`` says the text is complete.
    """
    if not context.line_prefix.strip() and text.startswith("\n"):
        # The cursor sits on a blank (indented) line: a suggestion that opens with a line break belongs right here.
        text = text.lstrip("\n")
        if text.startswith(context.line_prefix):
            text = text[len(context.line_prefix) :]
    if context.mid_line:
        if "\n" in text:
            return text.split("\n", 1)[0], True
        return text, final
    lines = text.split("\n")
    first_line = context.line_prefix + lines[0]
    block_indent = indentation(first_line) if first_line.strip() else indentation(context.line_prefix)
    kept = [lines[0]]
    judged = lines[1:] if final else lines[1:-1]
    for line in judged:
        if not line.strip():
            if any(previous.strip() for previous in kept):
                return _join(kept), True  # a blank line after code: the block is complete
            kept.append(line)
            continue
        if indentation(line) < block_indent:
            return _join(kept), True  # the block the cursor is in has ended
        if context.next_line.strip() and line.strip() == context.next_line.strip():
            return _join(kept), True  # the model is re-typing what is already below the cursor
        kept.append(line)
        if len(kept) >= MAX_CODE_LINES:
            return _join(kept), True
    if final:
        return _join(kept), True
    return "\n".join([*kept, lines[-1]]) if len(lines) > 1 else text, False


def _join(lines: list[str]) -> str:
    return "\n".join(lines).rstrip()


def keep_code_suggestion(text: str, context: CodeContext) -> bool:
    """Drop suggestions a user would not want: empty, whitespace, or a repeat of the line above or below."""
    if not text.strip():
        return False
    first_line = (context.line_prefix + text.split("\n", 1)[0]).strip()
    if context.previous_line.strip() and first_line == context.previous_line.strip() and "\n" not in text.strip():
        return False
    return not (context.next_line.strip() and text.strip() == context.next_line.strip())


def cut_prose(text: str, final: bool = False) -> tuple[str, bool]:
    """Finish the sentence, never crossing into a new paragraph; a very short ending may take one more sentence."""
    leading = len(text) - len(text.lstrip("\n"))
    lead, body = text[: min(leading, 2)], text[leading:]
    if "\n" in body:
        return lead + body.split("\n", 1)[0].rstrip(), True
    text = lead + body
    probe = text + " " if final else text
    ends = [match.end() for match in _SENTENCE_END.finditer(probe)]
    for count, end in enumerate(ends, 1):
        if count >= MAX_PROSE_SENTENCES or len(text[:end].split()) >= MIN_SENTENCE_WORDS:
            return text[:end], True
    return text, final


def keep_prose_suggestion(text: str) -> bool:
    return bool(text.strip())
