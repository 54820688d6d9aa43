"""THE rulebook for where an inline completion ends: ghost text, "Complete at cursor", ``penwright complete``.

Pure Python (no Qt, no torch). One call, :func:`cut`, takes the text generated so far, the :class:`Cursor` (the text
before and after it) and the mode, and says how much of the text to show and whether generation can stop. It is
called after every token, so a line still arriving is not judged until the next line starts or ``final`` says the
text is complete.

The rules follow what Continue, Tabby and llama.vscode do, one decision each:

Code
  * mid-line (text right of the cursor): one line, and the part of it that re-types the rest of the line is cut
    (llama.vscode ``updateSuggestion``, Tabby ``trimMultiLineInSingleLineMode``);
  * on a blank line: a leading line break and the re-typed indentation go (Continue ``filterLeadingNewline``);
  * leading lines that re-type the lines just above the cursor are dropped (the suggestion after ``def f(n):`` +
    Enter that began with ``def f(n):`` again). Continue's ``rewritesLineAbove`` rejects the whole suggestion; we
    drop only the re-typed lines, because what a small model writes after re-typing a ``def`` is its body;
  * the block: the suggestion ends at a line indented less than the cursor's block; when the suggestion opens a
    deeper block under the cursor's line it fills only that block, and a closing bracket at the block opener's
    indentation is kept when the text below does not close the block already (Tabby ``limitScopeByIndentation`` and
    ``removeDuplicatedBlockClosingLine``);
  * ONE blank line after code ends it (Continue ``noDoubleNewLine``): a blank line is where the author ends a thought,
    what follows is a guess at the next one, and a short suggestion is cheaper to read and to reject. The code pane
    used to go on to two blank lines; one rule for both now;
  * a Markdown fence ends it (Continue ``LINES_TO_STOP_AT``), as does a line that repeats the line below the cursor
    (Continue ``stopAtLinesExact``, Tabby ``removeDuplicateSuffixLines``), the same line a third time in a row
    (Continue ``stopAtRepeatingLines``: small greedy models loop) and a line limit the caller chooses (ghost text
    ``MAX_CODE_LINES``; "Complete at cursor", which the user asked for, none).

Both modes
  * the suggestion is cut where it starts to re-type the text right after the cursor (Continue ``stopAtStartOf``:
    20 characters found in the suffix's first 30);
  * a suggestion left empty or blank by the rules is not shown.

Prose
  * finish the sentence, never cross into a new paragraph; a very short ending may take one more sentence.

Not adopted: Continue's ``avoidPathLine`` and ``skipPrefixes`` (they undo Continue's own prompt format, which we do
not use) and Tabby's Levenshtein-based ``dropDuplicated`` (exact line matches are easy to predict and to test).

Indentation is measured one way everywhere (:func:`indent_width`): a tab advances to the next multiple of
``TAB_WIDTH`` columns, as the code editor draws it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TAB_WIDTH = 4
"""Columns per tab stop, as the code editor draws tabs."""
MAX_CODE_LINES = 8
"""Ghost text longer than this is rarely read, let alone accepted."""
MAX_PROSE_SENTENCES = 2
MIN_SENTENCE_WORDS = 4
"""A suggestion that only ends the current sentence in fewer words may run on into the next one."""
MAX_RIGHT_CHARS_FOR_CODE = 3
"""In code, no automatic suggestion when more than this many characters stand right of the cursor on its line."""
MIN_REPEAT_CHARS = 5
"""Lines above the cursor shorter than this (``}``, ``pass``) may well be typed again on purpose (Continue: 5)."""
REPEAT_RUN = 3
"""The same line this many times in a row is a loop, not code (Continue's ``stopAtRepeatingLines``)."""
SUFFIX_PROBE = 20
"""Characters that must match the start of the suffix before the suggestion counts as re-typing it (Continue)."""
SUFFIX_WINDOW = 30
"""How far into the suffix (after leading whitespace) the probe is looked for: 1.5 times the probe, as Continue."""
MAX_LINES_ABOVE = 200
"""Non-blank lines above the cursor kept for the repeat filter and for finding the cursor block's opener."""

_SENTENCE_END = re.compile(r"[.!?…](?:[\"'”’)\]]*)(?=\s)")
_CLOSERS = ")]}"
_OPENERS = "([{"


def indent_width(line: str) -> int:
    """Columns of leading whitespace; a tab advances to the next multiple of ``TAB_WIDTH`` (as the editor shows it).

    Counting a tab as a fixed 4 (the old ghost-text rule) put ``"  \\t"`` at 6 where the editor shows 4.
    """
    expanded = leading_whitespace(line).expandtabs(TAB_WIDTH)
    return len(expanded)


def leading_whitespace(line: str) -> str:
    """The spaces and tabs a line starts with."""
    return line[: len(line) - len(line.lstrip(" \t"))]


@dataclass(frozen=True)
class Cursor:
    """What the rules need to know about the text around the cursor; build it once per request."""

    line_prefix: str
    """The cursor's line left of the cursor."""
    line_suffix: str = ""
    """The cursor's line right of the cursor."""
    above: tuple[str, ...] = ()
    """Non-blank lines above the cursor's line, the nearest last (at most ``MAX_LINES_ABOVE``)."""
    next_line: str = ""
    """The first non-blank line below the cursor's line ("" when none)."""
    suffix_start: str = ""
    """The text after the cursor: its leading whitespace, then up to ``SUFFIX_WINDOW`` characters."""

    @classmethod
    def from_text(cls, prefix: str, suffix: str) -> Cursor:
        """The cursor between ``prefix`` and ``suffix`` (the document's text before and after it)."""
        before = prefix.split("\n")
        line_suffix, _, below = suffix.partition("\n")
        above: list[str] = []
        for line in reversed(before[:-1]):
            if line.strip():
                above.append(line)
                if len(above) >= MAX_LINES_ABOVE:
                    break
        next_line = next((line for line in below.split("\n") if line.strip()), "")
        gap = len(suffix) - len(suffix.lstrip())
        return cls(before[-1], line_suffix, tuple(reversed(above)), next_line, suffix[: gap + SUFFIX_WINDOW])

    @property
    def mid_line(self) -> bool:
        """Text stands right of the cursor on its line: only that line is completed."""
        return bool(self.line_suffix.strip())

    @property
    def previous_line(self) -> str:
        """The last non-blank line above the cursor's line ("" when none)."""
        return self.above[-1] if self.above else ""


@dataclass(frozen=True)
class Cut:
    """The rules' verdict on a generated text."""

    text: str
    """What to show after the cursor: ``generated[start : start + len(text)]``; "" means show nothing."""
    stop: bool
    """Generation can stop: the suggestion has ended (or the model has nothing more to add here)."""
    start: int = 0
    """Characters of the generated text dropped before ``text`` (a leading line break, re-typed lines above)."""


def should_suggest(cursor: Cursor, mode: str) -> bool:
    """Automatic code suggestions only where the line's end is near: typing mid-word in a long line is left alone.

    llama.vscode's ``max_line_suffix`` does the same; a manual request (a shortcut) is always answered.
    """
    return mode != "code" or len(cursor.line_suffix.strip()) <= MAX_RIGHT_CHARS_FOR_CODE


def cut(generated: str, cursor: Cursor, mode: str, final: bool = False, max_lines: int | None = MAX_CODE_LINES) -> Cut:
    """How much of ``generated`` to show, and whether to stop generating.

    ``mode`` is "code" or "prose". ``final`` says the text is complete (the model ended or ran out of tokens); until
    then the last line is still arriving and is not judged. ``max_lines`` caps a code suggestion (None: no cap).
    """
    suffix_at = _suffix_start_at(generated, cursor.suffix_start.lstrip())
    if suffix_at is not None:
        generated, final = generated[:suffix_at], True
        if cursor.suffix_start[:1].isspace():
            generated = generated.rstrip()  # the text after the cursor brings its own space
    verdict = _cut_code(generated, cursor, final, max_lines) if mode == "code" else _cut_prose(generated, final)
    if suffix_at is not None:
        verdict = Cut(verdict.text, True, verdict.start)
    if verdict.stop and not verdict.text.strip():
        return Cut("", True, verdict.start)
    return verdict


# --- both modes -------------------------------------------------------------------------------------------------


def _suffix_start_at(text: str, suffix_start: str) -> int | None:
    """Where the text starts to re-type the text after the cursor (Continue's ``stopAtStartOf``), or None.

    Only a suffix of at least ``SUFFIX_PROBE`` characters is looked for, so that short common endings (``)``,
    ``;``, a word) never cut a suggestion.
    """
    if len(suffix_start) < SUFFIX_PROBE:
        return None
    for end in range(SUFFIX_PROBE, len(text) + 1):
        if text[end - SUFFIX_PROBE : end] in suffix_start:
            return end - SUFFIX_PROBE
    return None


# --- prose ------------------------------------------------------------------------------------------------------


def _cut_prose(text: str, final: bool) -> Cut:
    """Finish the sentence, never crossing into a new paragraph; a very short ending may take one more sentence.

    Up to two leading line breaks are kept: a suggestion may start the next paragraph, but not leave a gap.
    """
    leading = len(text) - len(text.lstrip("\n"))
    start = leading - min(leading, 2)
    text = text[start:]
    body = text[min(leading, 2) :]
    if "\n" in body:
        return Cut(text[: len(text) - len(body)] + body.split("\n", 1)[0].rstrip(), True, start)
    probe = text + " " if final else text
    ends = [match.end() for match in _SENTENCE_END.finditer(probe)]
    for count, end in enumerate(ends, 1):
        if count >= MAX_PROSE_SENTENCES or len(text[:end].split()) >= MIN_SENTENCE_WORDS:
            return Cut(text[:end], True, start)
    return Cut(text, final, start)


# --- code -------------------------------------------------------------------------------------------------------


def _cut_code(text: str, cursor: Cursor, final: bool, max_lines: int | None) -> Cut:
    start = 0
    blank_cursor_line = not cursor.line_prefix.strip()
    if blank_cursor_line:
        start = _skip_to_code(text, 0, cursor.line_prefix, fresh_line=False)
    if cursor.mid_line:
        return _cut_mid_line(text, start, cursor, final)
    dropped, pending = _repeated_head(text[start:], cursor, final)
    if pending:
        return Cut("", False, start)  # it may still turn out to re-type the line above: show nothing yet
    if dropped:
        start += dropped
        if blank_cursor_line:
            start = _skip_to_code(text, start, cursor.line_prefix, fresh_line=True)
    return _cut_block(text[start:], start, cursor, final, max_lines)


def _skip_to_code(text: str, start: int, line_prefix: str, fresh_line: bool) -> int:
    """On a blank cursor line, skip leading line breaks and the indentation the cursor's line already has.

    A suggestion that opens with a line break belongs right at the cursor (Continue's ``filterLeadingNewline``);
    so does the line after dropped re-typed lines (``fresh_line``): its indentation is already on the cursor's line.
    """
    body = text[start:]
    stripped = body.lstrip("\n")
    skipped = len(body) - len(stripped)
    if (skipped or fresh_line) and stripped.startswith(line_prefix):
        skipped += len(line_prefix)
    return start + skipped


def _cut_mid_line(text: str, start: int, cursor: Cursor, final: bool) -> Cut:
    """One line, without the part that re-types what already stands right of the cursor (llama.vscode)."""
    body = text[start:]
    line, has_break, _ = body.partition("\n")
    done = bool(has_break) or final
    rest = cursor.line_suffix.strip()
    candidate = line.rstrip()
    if rest and candidate.endswith(rest):
        trimmed = candidate[: len(candidate) - len(rest)]
        if abs(_depth(cursor.line_prefix + trimmed + cursor.line_suffix)) <= abs(
            _depth(cursor.line_prefix + candidate + cursor.line_suffix)
        ):
            return Cut(trimmed.rstrip() if done else trimmed, done, start)
    return Cut(line.rstrip() if done else line, done, start)


def _depth(line: str) -> int:
    """Open brackets minus closed ones: a trim must not leave the line less balanced than before."""
    return sum(line.count(char) for char in _OPENERS) - sum(line.count(char) for char in _CLOSERS)


def _repeated_head(body: str, cursor: Cursor, final: bool) -> tuple[int, bool]:
    """Characters at the start of ``body`` that re-type the lines just above the cursor, and whether to wait.

    The suggestion's first lines are compared (ignoring indentation) with the last lines above the cursor, the
    cursor's own line included when it has code and the suggestion starts a new line. The longest such run is
    dropped; its lines must hold at least ``MIN_REPEAT_CHARS`` characters. While the run may still be growing
    (the line arriving so far matches the start of the next line above), the answer is to wait.
    """
    lines = body.split("\n")
    offset = 0
    above = list(cursor.above)
    if cursor.line_prefix.strip():
        if lines[0].strip() or len(lines) < 2:
            return 0, False  # the cursor's line goes on: no new line yet that could repeat one above
        above.append(cursor.line_prefix)
        offset = len(lines[0])  # "\n" + each repeated line goes; the line break after them stays
        lines = lines[1:]
    complete = len(lines) if final else len(lines) - 1
    candidates = [line.strip() for line in lines]
    tail = [line.strip() for line in above[-MAX_CODE_LINES:]]
    for count in range(min(len(tail), len(candidates)), 0, -1):
        run = tail[-count:]
        if count <= complete:
            if candidates[:count] == run and sum(len(line) for line in run) >= MIN_REPEAT_CHARS:
                repeated = sum(len(line) + 1 for line in lines[:count])
                return min(len(body), offset + repeated), False
        elif (
            not final
            and candidates[:complete] == run[:complete]
            and run[complete].startswith(candidates[complete])
            and sum(len(line) for line in run) >= MIN_REPEAT_CHARS
        ):
            return 0, True
    return 0, False


def _cut_block(body: str, start: int, cursor: Cursor, final: bool, max_lines: int | None) -> Cut:
    """Keep the lines that stay in the cursor's block, ending at the first line that leaves it."""
    lines = body.split("\n")
    has_code = bool(cursor.line_prefix.strip())
    first_line = cursor.line_prefix + lines[0]
    scope = _Scope.of(cursor, lines, has_code)
    below = cursor.next_line.rstrip()
    if not has_code and below and (final or len(lines) > 1) and first_line.rstrip() == below:
        return Cut("", True, start)  # the first line re-types the line below the cursor
    kept = [lines[0]]
    seen_code = bool(first_line.strip())
    judged = lines[1:] if final else lines[1:-1]
    for line in judged:
        stripped = line.strip()
        if not stripped:
            if seen_code:
                return _done(kept, start)  # one blank line after code: the block is complete
            kept.append(line)
            continue
        if stripped.startswith("```"):
            return _done(kept, start)  # the model closed a Markdown fence
        if below and line.rstrip() == below:
            return _done(kept, start)  # the model re-types what is already below the cursor
        if scope is not None and indent_width(line) < scope.limit:
            if scope.may_close(line, cursor):
                kept.append(line)  # the closing bracket of the cursor's block
            return _done(kept, start)  # the block the cursor is in has ended
        if len(kept) >= REPEAT_RUN - 1 and all(previous.strip() == stripped for previous in kept[-(REPEAT_RUN - 1) :]):
            return _done(kept[: len(kept) - (REPEAT_RUN - 2)], start)  # a loop: keep the line once
        kept.append(line)
        seen_code = True
        if max_lines is not None and len(kept) >= max_lines:
            return _done(kept, start)
    if final:
        return _done(kept, start)
    arriving = lines[-1] if len(lines) > 1 else first_line
    if below and (len(lines) > 1 or not has_code) and arriving.strip() and below.startswith(arriving.rstrip()):
        kept = kept[:-1] if len(lines) == 1 else kept
        return Cut("\n".join(kept), False, start)  # it may become the line below: hold it back
    if len(lines) > 1:
        kept.append(lines[-1])
    return Cut("\n".join(kept), False, start)


def _done(kept: list[str], start: int) -> Cut:
    return Cut("\n".join(kept).rstrip(), True, start)


@dataclass(frozen=True)
class _Scope:
    """The cursor's block: lines indented less than ``limit`` leave it; a closer at ``closer_indent`` ends it."""

    limit: int
    closer_indent: int | None

    @classmethod
    def of(cls, cursor: Cursor, lines: list[str], has_code: bool) -> _Scope | None:
        """The block from the cursor's line (when it has code) or the line above, and the suggestion's first code.

        When the suggestion's first code is indented deeper than that reference line, it opens (or fills) a block
        under it and may only fill that block (Tabby); otherwise it goes on in the block it starts in.
        """
        if has_code:
            reference = indent_width(cursor.line_prefix)
            first = next((line for line in lines[1:] if line.strip()), None)
        else:
            reference = indent_width(cursor.previous_line)
            first = next((line for line in [cursor.line_prefix + lines[0], *lines[1:]] if line.strip()), None)
        if first is None:
            return None  # no code yet to judge the block by
        indent = indent_width(first)
        if indent > reference:
            return cls(reference + 1, reference)
        limit = reference if has_code else indent
        return cls(limit, _opener_indent(cursor, limit))

    def may_close(self, line: str, cursor: Cursor) -> bool:
        """A closing bracket at the opener's indentation ends the block, unless the text below still needs it."""
        if self.closer_indent is None or line.strip()[0] not in _CLOSERS or indent_width(line) != self.closer_indent:
            return False
        below = cursor.next_line
        return not below or indent_width(below) < self.limit  # the block does not go on below the cursor


def _opener_indent(cursor: Cursor, limit: int) -> int | None:
    """Indentation of the nearest line above that is indented less than the block: the block's opener."""
    candidates = [*cursor.above, cursor.line_prefix] if cursor.line_prefix.strip() else list(cursor.above)
    for line in reversed(candidates):
        if indent_width(line) < limit:
            return indent_width(line)
    return None
