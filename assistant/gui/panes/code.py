"""The code pane: a code editor with line numbers and Pygments colours, plus four AI actions on the code.

Predictability rules, the same as the prose editor's: the pane runs at most one model job, and starting another
discards the running one, so stale text never lands. Complete at cursor and Generate from comment write into the
document as the answer streams, as ONE undo step, with the editor read-only meanwhile (so nothing can slip into the
middle of that undo step). Fix never writes while it runs: it shows a diff, and only Accept changes the document
(one undo step); Discard leaves the text, the undo stack and the modified flag exactly as they were. A failed job
leaves the document as it was.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import os
import re
from dataclasses import dataclass
from typing import Any

from pygments.lexer import ExtendedRegexLexer, Lexer, RegexLexer
from pygments.lexers import find_lexer_class_for_filename, get_lexer_by_name
from pygments.lexers.special import TextLexer
from pygments.style import StyleMeta
from pygments.styles import get_style_by_name
from pygments.token import Error, Token, Whitespace, _TokenType
from pygments.util import ClassNotFound
from PySide6.QtCore import QRect, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QColor,
    QFont,
    QFontDatabase,
    QKeyEvent,
    QKeySequence,
    QPainter,
    QPaintEvent,
    QPalette,
    QResizeEvent,
    QSyntaxHighlighter,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
)
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from assistant.core.code_text import (
    TAB_WIDTH,
    code_lines_so_far,
    completion_extent,
    fenced_code,
    final_code,
    fit_replacement,
    indent_width,
    leading_whitespace,
    unified_diff_text,
)
from assistant.core.languages import COMMON_LANGUAGES, GUESS_SAMPLE_CHARS, guess_language
from assistant.core.prompts import CodeRequest
from assistant.core.settings import AppSettings
from assistant.gui.jobs import JobRunner
from assistant.gui.panes.base import Pane
from assistant.gui.panes.ghost_text import GhostTextController
from assistant.gui.preview_panel import PreviewPanel, TrackedRange
from assistant.gui.streamed_insertion import StreamedInsertion
from assistant.gui.theme import is_dark
from assistant.gui.worker import AiClient

log = logging.getLogger(__name__)

LIGHT_STYLE = "default"
DARK_STYLE = "github-dark"
GUESS_DELAY_MS = 400
"""Auto language guessing waits for a pause in typing; it reads only the first ``GUESS_SAMPLE_CHARS``."""
ROOT_STACK: tuple[str, ...] = ("root",)


@functools.lru_cache(maxsize=64)
def lexer_for_alias(alias: str) -> Lexer:
    """One shared lexer per language: creating a Pygments lexer compiles its regexes, so it is kept."""
    try:
        return get_lexer_by_name(alias)
    except ClassNotFound:
        return TextLexer()


@functools.lru_cache(maxsize=256)
def lexer_for_file_name(name: str) -> Lexer | None:
    """The lexer for a file name ("x.rs" -> Rust), or None when the name says nothing.

    The common languages win where a pattern is shared: Pygments alone calls "query.sql" Transact-SQL.
    """
    base_name = os.path.basename(name)
    for _label, alias in COMMON_LANGUAGES:
        lexer = lexer_for_alias(alias)
        if alias != "text" and any(fnmatch.fnmatchcase(base_name, pattern) for pattern in lexer.filenames):
            return lexer
    lexer_class = find_lexer_class_for_filename(base_name)
    if lexer_class is None or not lexer_class.aliases:
        return None
    return lexer_for_alias(lexer_class.aliases[0])


def lexer_display_name(lexer: Lexer) -> str:
    return "plain text" if isinstance(lexer, TextLexer) else str(lexer.name)


# --- highlighting ---------------------------------------------------------------------------------------------

TokenList = list[tuple[int, Any, str]]


def _carries_state(lexer: Lexer) -> bool:
    """Whether the lexer is a plain state machine whose state can be carried from one line to the next."""
    return isinstance(lexer, RegexLexer) and not isinstance(lexer, ExtendedRegexLexer)


def lex_line(lexer: Lexer, text: str, stack: tuple[str, ...] = ROOT_STACK) -> tuple[TokenList, tuple[str, ...]]:
    """Tokens of one line, starting in state ``stack``, and the lexer's state stack where the line ends.

    Pygments never reports the state it ends in, yet that is what lets a docstring or a block comment continue on
    the next line when lines are highlighted one at a time. This is ``RegexLexer.get_tokens_unprocessed``'s loop,
    unchanged except that it starts from ``stack`` and returns the final stack. Lexers that are not plain state
    machines are lexed line by line without carried state.
    """
    if not _carries_state(lexer):
        return list(lexer.get_tokens_unprocessed(text)), ROOT_STACK
    tokendefs = lexer._tokens
    statestack = list(stack) if stack and stack[-1] in tokendefs else ["root"]
    statetokens = tokendefs[statestack[-1]]
    tokens: TokenList = []
    position = 0
    while True:
        for rexmatch, action, new_state in statetokens:
            match = rexmatch(text, position)
            if not match:
                continue
            if action is not None:
                if type(action) is _TokenType:
                    tokens.append((position, action, match.group()))
                else:
                    tokens.extend(action(lexer, match))
            position = match.end()
            if new_state is not None:
                if isinstance(new_state, tuple):
                    for state in new_state:
                        if state == "#pop":
                            if len(statestack) > 1:
                                statestack.pop()
                        elif state == "#push":
                            statestack.append(statestack[-1])
                        else:
                            statestack.append(state)
                elif isinstance(new_state, int):
                    if abs(new_state) >= len(statestack):
                        del statestack[1:]
                    else:
                        del statestack[new_state:]
                elif new_state == "#push":
                    statestack.append(statestack[-1])
                statetokens = tokendefs[statestack[-1]]
            break
        else:
            if position >= len(text):
                break
            if text[position] == "\n":
                statestack = ["root"]
                statetokens = tokendefs["root"]
                tokens.append((position, Whitespace, "\n"))
            else:
                tokens.append((position, Error, text[position]))
            position += 1
    return tokens, tuple(statestack)


def _utf16_offsets(text: str) -> list[int]:
    """Qt counts positions in UTF-16 units; Python in code points. Entry i is code point i's Qt position."""
    offsets = [0]
    for character in text:
        offsets.append(offsets[-1] + (2 if ord(character) > 0xFFFF else 1))
    return offsets


class PygmentsHighlighter(QSyntaxHighlighter):
    """Colours code with Pygments one block (line) at a time, carrying the lexer's state between lines.

    Lexing only the changed line keeps typing instant in long files. The lexer's state stack where a line ends (in
    a docstring, in a block comment) is stored as the block's state, so Qt re-highlights the following lines only
    when that state changes. Lines ending in the root state keep Qt's default state (-1) and neighbouring tokens of
    one look share one range, so a line costs as few calls into Qt as it can. ``blocks_highlighted`` counts the
    lines lexed, for tests and profiling.
    """

    def __init__(self, document: QTextDocument, lexer: Lexer | None = None, dark: bool = False) -> None:
        super().__init__(document)
        self._lexer: Lexer = lexer or TextLexer()
        self._dark = dark
        self._style: StyleMeta = get_style_by_name(DARK_STYLE if dark else LIGHT_STYLE)
        self._formats: dict[Any, QTextCharFormat | None] = {}
        self._formats_by_look: dict[tuple[Any, ...], QTextCharFormat] = {}
        self._stacks: list[tuple[str, ...]] = []
        self._stack_ids: dict[tuple[str, ...], int] = {ROOT_STACK: -1}
        self.blocks_highlighted = 0

    @property
    def lexer(self) -> Lexer:
        return self._lexer

    @property
    def style(self) -> StyleMeta:
        """The Pygments style in use; the editor takes its background and text colours from it."""
        return self._style

    @property
    def dark(self) -> bool:
        return self._dark

    def set_lexer(self, lexer: Lexer) -> None:
        if lexer is self._lexer:
            return
        self._lexer = lexer
        self._stacks = []
        self._stack_ids = {ROOT_STACK: -1}
        self.rehighlight()

    def set_dark(self, dark: bool) -> None:
        """Switch between the light and the dark Pygments style."""
        if dark == self._dark:
            return
        self._dark = dark
        self._style = get_style_by_name(DARK_STYLE if dark else LIGHT_STYLE)
        self._formats.clear()
        self._formats_by_look.clear()
        self.rehighlight()

    def default_colors(self) -> tuple[QColor, QColor]:
        """The style's background and plain-text colours."""
        background = QColor(self._style.background_color or ("#0d1117" if self._dark else "#ffffff"))
        text = self._style.style_for_token(Token.Text)["color"] or self._style.style_for_token(Token)["color"]
        foreground = QColor(f"#{text}") if text else QColor("#e6edf3" if self._dark else "#000000")
        return background, foreground

    def format_for(self, token_type: Any) -> QTextCharFormat | None:
        """The character format for a token type, or None where the editor's plain colours already fit."""
        if token_type in self._formats:
            return self._formats[token_type]
        char_format: QTextCharFormat | None = None
        if token_type not in Error and token_type not in Token.Text:  # half-typed code should not flash red
            style = self._style.style_for_token(token_type)
            look = (style["color"], style["bgcolor"], style["bold"], style["italic"], style["underline"])
            if any(look):
                char_format = self._formats_by_look.get(look)
                if char_format is None:
                    char_format = self._make_format(*look)
                    self._formats_by_look[look] = char_format
        self._formats[token_type] = char_format
        return char_format

    @staticmethod
    def _make_format(color: str, background: str, bold: bool, italic: bool, underline: bool) -> QTextCharFormat:
        char_format = QTextCharFormat()
        if color:
            char_format.setForeground(QColor(f"#{color}"))
        if background:
            char_format.setBackground(QColor(f"#{background}"))
        if bold:
            char_format.setFontWeight(QFont.Weight.Bold)
        if italic:
            char_format.setFontItalic(True)
        if underline:
            char_format.setFontUnderline(True)
        return char_format

    def _stack_id(self, stack: tuple[str, ...]) -> int:
        """Block states are ints, so each distinct lexer stack gets a number (the root state is Qt's -1)."""
        number = self._stack_ids.get(stack)
        if number is None:
            number = len(self._stacks)
            self._stacks.append(stack)
            self._stack_ids[stack] = number
        return number

    def format_ranges(self, text: str) -> tuple[list[tuple[int, int, QTextCharFormat]], int]:
        """The coloured ranges of one line (code points) and the block state it ends in."""
        previous = self.previousBlockState()
        stack = self._stacks[previous] if 0 <= previous < len(self._stacks) else ROOT_STACK
        tokens, end_stack = lex_line(self._lexer, text + "\n", stack)
        ranges: list[tuple[int, int, QTextCharFormat]] = []
        for start, token_type, value in tokens:
            if start >= len(text):
                break
            char_format = self.format_for(token_type)
            if char_format is None or not value:
                continue
            end = min(start + len(value), len(text))
            if ranges and ranges[-1][1] == start and ranges[-1][2] is char_format:
                ranges[-1] = (ranges[-1][0], end, char_format)
            else:
                ranges.append((start, end, char_format))
        return ranges, self._stack_id(end_stack)

    def highlightBlock(self, text: str) -> None:  # noqa: N802 (Qt's name)
        self.blocks_highlighted += 1
        if isinstance(self._lexer, TextLexer):
            return
        try:
            ranges, state = self.format_ranges(text)
        except Exception:  # a lexer bug must never break typing: leave the line plain
            log.debug("Pygments failed on a line", exc_info=True)
            ranges, state = [], -1
        offsets = None if text.isascii() else _utf16_offsets(text)
        for start, end, char_format in ranges:
            if offsets is None:
                self.setFormat(start, end - start, char_format)
            else:
                self.setFormat(offsets[start], offsets[end] - offsets[start], char_format)
        if self.currentBlockState() != state:
            self.setCurrentBlockState(state)


# --- the editor -----------------------------------------------------------------------------------------------

BRACKETS = {"(": ")", "[": "]", "{": "}"}
COLON_BLOCK_LANGUAGES = frozenset({"python", "python2", "cython"})
"""Languages whose blocks open with a colon at the end of a line."""
HASH_COMMENT_LANGUAGES = frozenset({"python", "python2", "cython", "bash", "ruby", "perl", "yaml", "toml", "r"})
"""Languages whose line comments start with "#" (the others' with "//")."""
PYTHON_BLOCK_ENDERS = re.compile(r"^\s*(?:(?:return|raise)\b.*|pass|break|continue)\s*$")
"""A Python line after which the block is over: the next line goes one level back, as Python editors do."""
MATCH_SCAN_CHARS = 20_000
"""How far back a closing bracket looks for its opening one (enough for any block a person reads at once)."""


def code_part(line: str, language: str) -> str:
    """The line without its trailing comment (a "#" or "//" outside quotes), right spaces stripped."""
    marker = "#" if language in HASH_COMMENT_LANGUAGES else "//"
    quote = ""
    for index, character in enumerate(line):
        if quote:
            if character == quote and line[index - 1] != "\\":
                quote = ""
        elif character in "\"'`":
            quote = character
        elif line.startswith(marker, index):
            return line[:index].rstrip()
    return line.rstrip()


def indent_unit(line: str) -> str:
    """One level of indentation as this line writes it: a tab if it is indented with tabs, else spaces."""
    return "\t" if line.startswith("\t") else " " * TAB_WIDTH


def line_break_for(before: str, after: str, language: str) -> tuple[str, str]:
    """What Enter inserts before and after the cursor, given the line's text on either side of it.

    The new line keeps the indentation and gains a level after a block opener: an opening bracket at the end of
    the line in any language, a colon in Python. Between a bracket and its closing partner (``{|}``) the closer
    moves to a line of its own, and after ``return``, ``pass``, ``break``, ``continue`` or ``raise`` Python's
    next line goes one level back: what VS Code and the JetBrains editors do.
    """
    indent = leading_whitespace(before)
    code = code_part(before, language)
    opens = bool(code) and (code[-1] in BRACKETS or (code[-1] == ":" and language in COLON_BLOCK_LANGUAGES))
    if opens:
        inner = indent + indent_unit(before)
        closer = after.lstrip()[:1]
        if code[-1] in BRACKETS and closer == BRACKETS[code[-1]]:
            return "\n" + inner, "\n" + indent
        return "\n" + inner, ""
    if language in COLON_BLOCK_LANGUAGES and not after.strip() and PYTHON_BLOCK_ENDERS.match(code):
        unit = indent_unit(before)
        return "\n" + (indent[: -len(unit)] if indent.endswith(unit) else indent), ""
    return "\n" + indent, ""


def matching_opener_indent(text_before: str, closer: str) -> str | None:
    """The indentation of the line holding the bracket that ``closer`` would close, or None if there is none."""
    opener = next(key for key, value in BRACKETS.items() if value == closer)
    depth = 0
    for index in range(len(text_before) - 1, -1, -1):
        character = text_before[index]
        if character == closer:
            depth += 1
        elif character == opener:
            if depth == 0:
                return leading_whitespace(text_before[text_before.rfind("\n", 0, index) + 1 : index])
            depth -= 1
    return None



class LineNumberArea(QWidget):
    """The gutter left of the text: it only paints; the editor decides its width and what it shows."""

    def __init__(self, editor: CodeEditor) -> None:
        super().__init__(editor)
        self.setObjectName("codeLineNumbers")
        self._editor = editor

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(self._editor.line_number_area_width(), 0)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt's name)
        self._editor.paint_line_numbers(event)


class CodeEditor(QPlainTextEdit):
    """A plain-text editor for code: line numbers, the current line shaded, spaces for tabs, kept indentation.

    The gutter follows Qt's "Code Editor" example: a child widget over the left viewport margin, as wide as the
    line count's digits, repainted from ``updateRequest`` as the text scrolls or changes.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("codeEditor")
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.language = ""
        """The code's language (a Pygments alias such as "python"), for the indentation rules; "" if unknown."""
        self._line_numbers = LineNumberArea(self)
        self._gutter_background = QColor("#f0f0f0")
        self._gutter_text = QColor("#888888")
        self._gutter_current_text = QColor("#000000")
        self._current_line_color = QColor("#f0f0f0")
        self.blockCountChanged.connect(self._update_line_number_width)
        self.updateRequest.connect(self._update_line_number_area)
        self.cursorPositionChanged.connect(self._highlight_current_line)
        self._update_line_number_width()
        self._highlight_current_line()

    @property
    def line_number_area(self) -> QWidget:
        return self._line_numbers

    def line_number_area_width(self) -> int:
        digits = max(2, len(str(max(1, self.blockCount()))))
        return 12 + self.fontMetrics().horizontalAdvance("9") * digits

    def set_code_font(self, font: QFont) -> None:
        self.setFont(font)
        self.document().setDefaultFont(font)
        self.setTabStopDistance(TAB_WIDTH * self.fontMetrics().horizontalAdvance(" "))
        self._update_line_number_width()

    def set_colors(self, background: QColor, foreground: QColor) -> None:
        """Use the highlighting style's colours, so its token colours keep their contrast."""
        palette = self.palette()
        palette.setColor(QPalette.ColorRole.Base, background)
        palette.setColor(QPalette.ColorRole.Text, foreground)
        self.setPalette(palette)
        dark = background.lightness() < 128
        self._current_line_color = background.lighter(140) if dark else background.darker(106)
        self._gutter_background = background.lighter(120) if dark else background.darker(104)
        self._gutter_text = QColor(foreground)
        self._gutter_text.setAlpha(130)
        self._gutter_current_text = QColor(foreground)
        self._highlight_current_line()
        self._line_numbers.update()

    # --- the gutter ----------------------------------------------------------------------------------------------

    def _update_line_number_width(self, _block_count: int = 0) -> None:
        width = self.line_number_area_width()
        self.setViewportMargins(width, 0, 0, 0)
        contents = self.contentsRect()
        self._line_numbers.setGeometry(QRect(contents.left(), contents.top(), width, contents.height()))

    def _update_line_number_area(self, rect: QRect, dy: int) -> None:
        if dy:
            self._line_numbers.scroll(0, dy)
        else:
            self._line_numbers.update(0, rect.y(), self._line_numbers.width(), rect.height())
        if rect.contains(self.viewport().rect()):
            self._update_line_number_width()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._update_line_number_width()

    def paint_line_numbers(self, event: QPaintEvent) -> None:
        painter = QPainter(self._line_numbers)
        try:
            painter.fillRect(event.rect(), self._gutter_background)
            block = self.firstVisibleBlock()
            number = block.blockNumber()
            top = round(self.blockBoundingGeometry(block).translated(self.contentOffset()).top())
            bottom = top + round(self.blockBoundingRect(block).height())
            current = self.textCursor().blockNumber()
            width = self._line_numbers.width() - 6
            height = self.fontMetrics().height()
            while block.isValid() and top <= event.rect().bottom():
                if block.isVisible() and bottom >= event.rect().top():
                    painter.setPen(self._gutter_current_text if number == current else self._gutter_text)
                    painter.drawText(0, top, width, height, Qt.AlignmentFlag.AlignRight, str(number + 1))
                block = block.next()
                top = bottom
                bottom = top + round(self.blockBoundingRect(block).height())
                number += 1
        finally:
            painter.end()

    def _highlight_current_line(self) -> None:
        self.viewport().update()
        self._line_numbers.update()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt's name)
        """Shade the cursor's line, then let Qt draw the text over it.

        Painted here rather than as a full-width extra selection: Qt shortens such a selection to the text while
        ghost text (a preedit area) shows on the line, and this way the shade also covers the ghost's lines.
        """
        block = self.textCursor().block()
        if block.isVisible():
            line = self.blockBoundingGeometry(block).translated(self.contentOffset())
            painter = QPainter(self.viewport())
            try:
                painter.fillRect(
                    QRectF(0, line.top(), self.viewport().width(), line.height()), self._current_line_color
                )
            finally:
                painter.end()
        super().paintEvent(event)

    # --- typing --------------------------------------------------------------------------------------------------

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt's name)
        """Tab indents with spaces, Shift+Tab dedents; Enter, Backspace and closing brackets follow the blocks."""
        if self.isReadOnly():
            super().keyPressEvent(event)
            return
        key = event.key()
        modifiers = event.modifiers()
        command_keys = (
            Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier | Qt.KeyboardModifier.MetaModifier
        )
        plain = not modifiers & command_keys
        if key == Qt.Key.Key_Tab and plain:
            self._tab()
        elif key == Qt.Key.Key_Backtab and plain:
            self._change_indent(dedent=True)
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and plain:
            self._new_line()
        elif not self._indentation_key(event, plain):
            super().keyPressEvent(event)

    def _indentation_key(self, event: QKeyEvent, plain: bool) -> bool:
        """Backspace in leading spaces, or a closing bracket on a blank line; False if the key is not one."""
        if event.key() == Qt.Key.Key_Backspace and event.modifiers() == Qt.KeyboardModifier.NoModifier:
            return self._backspace_level()
        text = event.text()
        return plain and len(text) == 1 and text in BRACKETS.values() and self._type_closer(text)

    def _line_around(self, cursor: QTextCursor) -> tuple[str, str]:
        """The cursor line's text before the selection (or cursor) and after it."""
        document = self.document()
        start, end = cursor.selectionStart(), cursor.selectionEnd()
        left = QTextCursor(document)
        left.setPosition(document.findBlock(start).position())
        left.setPosition(start, QTextCursor.MoveMode.KeepAnchor)
        right = QTextCursor(document)
        right.setPosition(end)
        right.movePosition(QTextCursor.MoveOperation.EndOfBlock, QTextCursor.MoveMode.KeepAnchor)
        return left.selection().toPlainText(), right.selection().toPlainText()

    def _new_line(self) -> None:
        """Break the line with the indentation the code calls for (see :func:`line_break_for`)."""
        cursor = self.textCursor()
        before, after = self._line_around(cursor)
        head, tail = line_break_for(before, after, self.language)
        if tail:
            cursor.beginEditBlock()
            cursor.insertText(head)
            caret = cursor.position()
            cursor.insertText(tail)
            cursor.endEditBlock()
            cursor.setPosition(caret)
        else:
            cursor.insertText(head)
        self.setTextCursor(cursor)
        self.ensureCursorVisible()

    def _backspace_level(self) -> bool:
        """Backspace in leading spaces takes back one level (to the previous tab stop); False if it does not apply."""
        cursor = self.textCursor()
        before, _after = self._line_around(cursor)
        if cursor.hasSelection() or not before or before.strip(" "):
            return False
        cursor.movePosition(
            QTextCursor.MoveOperation.PreviousCharacter,
            QTextCursor.MoveMode.KeepAnchor,
            (len(before) - 1) % TAB_WIDTH + 1,
        )
        cursor.removeSelectedText()
        self.setTextCursor(cursor)
        return True

    def _type_closer(self, closer: str) -> bool:
        """A closing bracket typed on a blank line lines up with the line that opened it; False if not done."""
        cursor = self.textCursor()
        block = cursor.block()
        before, _after = self._line_around(cursor)
        if cursor.hasSelection() or not before or before.strip():
            return False
        scan = QTextCursor(self.document())
        scan.setPosition(max(0, block.position() - MATCH_SCAN_CHARS))
        scan.setPosition(block.position(), QTextCursor.MoveMode.KeepAnchor)
        indent = matching_opener_indent(scan.selection().toPlainText(), closer)
        if indent is None or indent == before:
            return False
        cursor.beginEditBlock()
        cursor.setPosition(block.position())
        cursor.setPosition(block.position() + len(before), QTextCursor.MoveMode.KeepAnchor)
        cursor.insertText(indent + closer)
        cursor.endEditBlock()
        self.setTextCursor(cursor)
        return True

    def _tab(self) -> None:
        cursor = self.textCursor()
        if cursor.hasSelection():
            start = self.document().findBlock(cursor.selectionStart())
            end = self.document().findBlock(cursor.selectionEnd())
            if start.blockNumber() != end.blockNumber():
                self._change_indent(dedent=False)
                return
        cursor.beginEditBlock()
        cursor.removeSelectedText()
        column = len(cursor.block().text()[: cursor.positionInBlock()].expandtabs(TAB_WIDTH))
        cursor.insertText(" " * (TAB_WIDTH - column % TAB_WIDTH))
        cursor.endEditBlock()
        self.setTextCursor(cursor)

    def _change_indent(self, dedent: bool) -> None:
        """Indent or dedent every line the selection touches, as one undo step."""
        cursor = self.textCursor()
        document = self.document()
        first = document.findBlock(cursor.selectionStart())
        last = document.findBlock(cursor.selectionEnd())
        if last.blockNumber() > first.blockNumber() and cursor.selectionEnd() == last.position():
            last = last.previous()  # a selection ending at a line's start does not include that line
        edit = QTextCursor(document)
        edit.beginEditBlock()
        block = first
        while block.isValid() and block.blockNumber() <= last.blockNumber():
            edit.setPosition(block.position())
            if dedent:
                text = block.text()
                remove = 1 if text.startswith("\t") else len(text[:TAB_WIDTH]) - len(text[:TAB_WIDTH].lstrip(" "))
                if remove:
                    edit.setPosition(block.position() + remove, QTextCursor.MoveMode.KeepAnchor)
                    edit.removeSelectedText()
            else:
                edit.insertText(" " * TAB_WIDTH)
            block = block.next()
        edit.endEditBlock()


# --- the pane -------------------------------------------------------------------------------------------------


@dataclass
class _Fix:
    """What Fix works on (the selection, or the whole file) and, once the answer is in, the code to put there."""

    target: TrackedRange
    new_text: str = ""


class CodePane(Pane):
    """The code editor and its AI actions: Complete at cursor, Explain, Generate from comment, Fix.

    Signals:
        explainRequested(code, language_name): the user asked for an explanation; the main window sends it to chat.
        busyChanged(busy): a model job started (True) or ended (False).
        statusMessage(text): progress and errors (inherited), also shown in the pane's message line.
    """

    explainRequested = Signal(str, str)
    busyChanged = Signal(bool)
    menu_title = "Code"

    def __init__(self, client: AiClient, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(client, settings, parent)
        self.setObjectName("codePane")
        self._file_name: str | None = None
        self._guessed_alias = "text"
        self._guessed_sample: str | None = None
        self._jobs = JobRunner(client, self)
        self._job_kind = ""
        """What the running job does ("complete", "generate", "fix"); "" when none runs."""
        self._received = ""
        self._insertion: StreamedInsertion | None = None
        self._was_read_only = False
        self._completion_indent = 0
        self._single_line = False
        self._generate_indent = ""
        self._fix: _Fix | None = None

        self._editor = CodeEditor(self)
        self._highlighter = PygmentsHighlighter(self._editor.document())
        self.ghost = GhostTextController(
            self._editor,
            client,
            mode="code",
            pane="code",
            language=self._request_language,
            enabled=settings.suggest_in_code,
            parent=self,
        )
        self.ghost.message.connect(self._say)
        self._build_actions()
        self._build_ui()
        self._jobs.textArrived.connect(self._on_text)
        self._jobs.progress.connect(self._say)
        self._jobs.finished.connect(self._on_finished)
        self._jobs.failed.connect(self._on_failed)
        self._jobs.busyChanged.connect(self._stop_button.setEnabled)
        self._jobs.busyChanged.connect(self.busyChanged)
        self._guess_timer = QTimer(self)
        self._guess_timer.setSingleShot(True)
        self._guess_timer.setInterval(GUESS_DELAY_MS)
        self._guess_timer.timeout.connect(self._guess_language_now)
        self._editor.document().contentsChange.connect(self._on_contents_change)
        self.apply_settings(settings)
        self._update_lexer()

    # --- building ------------------------------------------------------------------------------------------------

    def _make_action(self, text: str, shortcut: str, name: str, slot: Any) -> QAction:
        action = QAction(text, self)
        action.setObjectName(name)
        action.setShortcut(QKeySequence(shortcut))
        # Only while focus is in this pane: the other panes may use the same keys for their own actions.
        action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        action.setToolTip(f"{text} ({QKeySequence(shortcut).toString(QKeySequence.SequenceFormat.NativeText)})")
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        self.complete_action = self._make_action(
            "Complete at Cursor", "Ctrl+Shift+Space", "codeCompleteAction", self.complete_at_cursor
        )
        self.explain_action = self._make_action(
            "Explain Selection", "Ctrl+Shift+X", "codeExplainAction", self.explain_selection
        )
        self.generate_action = self._make_action(
            "Generate from Comment", "Ctrl+Shift+G", "codeGenerateAction", self.generate_from_comment
        )
        self.fix_action = self._make_action("Fix Code", "Ctrl+Shift+F", "codeFixAction", self.fix_code)
        self.addActions([self.ghost.suggest_action, self.ghost.auto_action])
        self.ghost.auto_action.toggled.connect(self._remember_auto_suggest)

    def _build_ui(self) -> None:
        self._language_box = QComboBox()
        self._language_box.setObjectName("codeLanguage")
        self._language_box.setToolTip("The code's language: Auto follows the file name or guesses from the text")
        self._language_box.addItem("Auto", "")
        for label, alias in COMMON_LANGUAGES:
            self._language_box.addItem(label, alias)
        self._language_box.currentIndexChanged.connect(self._update_lexer)

        toolbar = QHBoxLayout()
        toolbar.addWidget(QLabel("Language:"))
        toolbar.addWidget(self._language_box)
        toolbar.addStretch(1)
        for action, name in (
            (self.complete_action, "codeComplete"),
            (self.explain_action, "codeExplain"),
            (self.generate_action, "codeGenerate"),
            (self.fix_action, "codeFix"),
        ):
            button = QToolButton()
            button.setObjectName(name)
            button.setDefaultAction(action)
            toolbar.addWidget(button)
        self._stop_button = QPushButton("Stop")
        self._stop_button.setObjectName("codeStop")
        self._stop_button.setToolTip("Stop the model (Esc)")
        self._stop_button.setEnabled(False)
        self._stop_button.clicked.connect(self.stop)
        toolbar.addWidget(self._stop_button)

        self._fix_panel = PreviewPanel(
            "codeFix",
            can_insert=False,
            can_copy=False,
            accept_tip="Replace the code with the fixed version (one undo step)",
            discard_tip="Close the diff and leave the code as it is",
        )
        self._fix_panel.view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self._fix_panel.acceptRequested.connect(self.accept_fix)
        self._fix_panel.discardRequested.connect(self.discard_fix)
        self._diff_highlighter = PygmentsHighlighter(self._fix_panel.view.document(), lexer_for_alias("diff"))

        self._error_input = QPlainTextEdit()
        self._error_input.setObjectName("codeErrorInput")
        self._error_input.setPlaceholderText("Optional: paste the error message or traceback here; Fix uses it.")
        self._error_input.setTabChangesFocus(True)
        error_label = QLabel("Error message for &Fix:")
        error_label.setBuddy(self._error_input)

        bottom = QWidget()
        bottom_layout = QVBoxLayout(bottom)
        bottom_layout.setContentsMargins(0, 0, 0, 0)
        bottom_layout.addWidget(self._fix_panel, 3)
        bottom_layout.addWidget(error_label)
        bottom_layout.addWidget(self._error_input, 1)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self._editor)
        splitter.addWidget(bottom)
        splitter.setStretchFactor(0, 4)
        splitter.setStretchFactor(1, 1)
        splitter.setChildrenCollapsible(False)

        self._message = QLabel()
        self._message.setObjectName("codeMessage")
        self._message.setWordWrap(True)
        self._message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        layout = QVBoxLayout(self)
        layout.addLayout(toolbar)
        layout.addWidget(splitter, 1)
        layout.addWidget(self._message)

    # --- the public face -----------------------------------------------------------------------------------------

    @property
    def editor(self) -> CodeEditor:
        return self._editor

    @property
    def highlighter(self) -> PygmentsHighlighter:
        return self._highlighter

    @property
    def file_name(self) -> str | None:
        return self._file_name

    @property
    def busy(self) -> bool:
        return self._jobs.busy

    def pane_actions(self) -> list[QAction]:
        return [
            self.complete_action,
            self.explain_action,
            self.generate_action,
            self.fix_action,
            self.ghost.suggest_action,
            self.ghost.auto_action,
        ]

    def _remember_auto_suggest(self, enabled: bool) -> None:
        """The menu toggle is the setting: the main window saves it with the others."""
        self.settings.suggest_in_code = enabled

    def set_file_name(self, name: str | None) -> None:
        """Highlight as the file name says ("x.rs" is Rust). A new name puts the language box back on Auto.

        Call it before loading the text, so a long file is highlighted once, in the right language.
        """
        name = name or None
        if name == self._file_name:
            return
        self._file_name = name
        if self._language_box.currentIndex() != 0:
            self._language_box.setCurrentIndex(0)  # updates the lexer
        else:
            self._update_lexer()

    def language_name(self) -> str:
        """The human name of the code's language ("Python", "Rust", "plain text")."""
        return lexer_display_name(self._highlighter.lexer)

    def set_dark(self, dark: bool) -> None:
        """Use the dark (or light) highlighting style, with the editor's colours to match."""
        self._highlighter.set_dark(dark)
        self._diff_highlighter.set_dark(dark)
        background, foreground = self._highlighter.default_colors()
        self._editor.set_colors(background, foreground)
        palette = self._fix_panel.view.palette()
        palette.setColor(QPalette.ColorRole.Base, background)
        palette.setColor(QPalette.ColorRole.Text, foreground)
        self._fix_panel.view.setPalette(palette)

    def apply_settings(self, settings: AppSettings) -> None:
        super().apply_settings(settings)
        self.ghost.auto_action.setChecked(settings.suggest_in_code)
        if settings.editor_font_family:
            font = QFont(settings.editor_font_family)
            font.setStyleHint(QFont.StyleHint.TypeWriter)
        else:
            font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setFixedPitch(True)
        if settings.editor_font_size > 0:
            font.setPointSize(settings.editor_font_size)
        self._editor.set_code_font(font)
        self._fix_panel.view.setFont(font)
        self._error_input.setFont(font)
        self.set_dark(is_dark(settings.theme))

    def stop(self) -> None:
        """Stop the running job now; text already written stays (one undo step), nothing more arrives."""
        if not self._jobs.busy:
            return
        kind = self._job_kind
        self._end_job()
        self._say("Fix stopped; the code is unchanged." if kind == "fix" else "Stopped.")

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt's name)
        self._end_job()
        super().closeEvent(event)

    # --- language ------------------------------------------------------------------------------------------------

    def _auto_lexer(self) -> Lexer:
        """What Auto means: the file name's language, else the language guessed from the text."""
        if self._file_name:
            by_name = lexer_for_file_name(self._file_name)
            if by_name is not None:
                return by_name
        return lexer_for_alias(self._guessed_alias)

    def _guessing_applies(self) -> bool:
        return not self._language_box.currentData() and (
            not self._file_name or lexer_for_file_name(self._file_name) is None
        )

    def _update_lexer(self) -> None:
        auto = self._auto_lexer()
        alias = self._language_box.currentData()
        self._highlighter.set_lexer(lexer_for_alias(alias) if alias else auto)
        self._editor.language = self._request_language() or ""
        self._language_box.setItemText(0, f"Auto ({lexer_display_name(auto)})")
        if self._guessing_applies():
            self._guess_timer.start()

    def _on_contents_change(self, _position: int, removed: int, added: int) -> None:
        if removed == added:
            return  # only formats changed (highlighting), or one character replaced another
        if self._insertion is not None and not self._insertion.writing:
            # The text changed under the AI's insertion (a file was loaded, Replace All ran): its answer no longer
            # fits where it was going, so it stops, keeping what it wrote.
            self._end_job()
            self._say("Stopped: the code changed while the model was writing.")
        if self._guessing_applies():
            self._guess_timer.start()

    def _guess_language_now(self) -> None:
        if not self._guessing_applies():
            return
        document = self._editor.document()
        head = QTextCursor(document)
        head.setPosition(min(GUESS_SAMPLE_CHARS, document.characterCount() - 1), QTextCursor.MoveMode.KeepAnchor)
        sample = head.selection().toPlainText()
        if sample == self._guessed_sample:
            return
        self._guessed_sample = sample
        alias = guess_language(sample).fence
        if alias != self._guessed_alias:
            self._guessed_alias = alias
            self._update_lexer()

    def _request_language(self) -> str | None:
        """The language for a request: the lexer's alias, or None to let the prompt builder guess."""
        lexer = self._highlighter.lexer
        if isinstance(lexer, TextLexer) or not lexer.aliases:
            return None
        return str(lexer.aliases[0])

    # --- the actions ---------------------------------------------------------------------------------------------

    def complete_at_cursor(self) -> None:
        """Continue the code at the cursor, writing the answer in as it streams (one undo step)."""
        with self._jobs.replacing():
            self._end_job()
            cursor = self._editor.textCursor()
            position = cursor.position()
            before = QTextCursor(self._editor.document())
            before.setPosition(position, QTextCursor.MoveMode.KeepAnchor)
            prefix = before.selection().toPlainText()
            if not prefix.strip():
                self._say("Write some code first: Complete continues the code before the cursor.")
                return
            line = cursor.block().text()
            self._completion_indent = indent_width(line)
            self._single_line = bool(line[cursor.positionInBlock() :].strip())
            cursor.clearSelection()
            self._editor.setTextCursor(cursor)
            request = CodeRequest(prefix, mode="complete", language=self._request_language(), filename=self._file_name)
            self._insertion = StreamedInsertion(self._editor, position)
            self._start_job("complete", request, "Completing… (Esc stops)")

    def explain_selection(self) -> None:
        """Hand the selection (or the whole file) to the chat pane for an explanation; no generation here."""
        cursor = self._editor.textCursor()
        code = cursor.selection().toPlainText() if cursor.hasSelection() else self._editor.toPlainText()
        if not code.strip():
            self._say("Select the code to explain.")
            return
        self.explainRequested.emit(code, self.language_name())

    def generate_from_comment(self) -> None:
        """Write code for the selected description (or the cursor's line) and insert it below, as it streams."""
        with self._jobs.replacing():
            self._end_job()
            document = self._editor.document()
            cursor = self._editor.textCursor()
            if cursor.hasSelection():
                description = cursor.selection().toPlainText()
                last_block = document.findBlock(cursor.selectionEnd())
                first_block = document.findBlock(cursor.selectionStart())
                ends_at_line_start = cursor.selectionEnd() == last_block.position()
                if last_block.blockNumber() > first_block.blockNumber() and ends_at_line_start:
                    last_block = last_block.previous()
            else:
                first_block = last_block = cursor.block()
                description = first_block.text()
            if not description.strip():
                self._say("Write a comment that says what the code should do, then Generate on that line.")
                return
            self._generate_indent = leading_whitespace(first_block.text())
            request = CodeRequest(
                description.strip(), mode="generate", language=self._request_language(), filename=self._file_name
            )
            self._insertion = StreamedInsertion(self._editor, last_block.position() + last_block.length() - 1)
            self._start_job("generate", request, "Writing code… (Esc stops)")

    def fix_code(self) -> None:
        """Ask for a fixed version of the selection (or the whole file) and show it as a diff to accept or discard."""
        with self._jobs.replacing():
            self._end_job()
            self._close_diff()
            cursor = self._editor.textCursor()
            if cursor.hasSelection():
                target = TrackedRange.of_selection(cursor)
            else:
                target = TrackedRange.of_document(self._editor.document())
            if not target.original.strip():
                self._say("There is no code to fix.")
                return
            self._fix = _Fix(target)
            request = CodeRequest(
                target.original,
                mode="fix",
                language=self._request_language(),
                filename=self._file_name,
                error=self._error_input.toPlainText(),
            )
            self._start_job("fix", request, "Fixing… (Esc stops)")

    def accept_fix(self) -> None:
        """Put the fixed code in place of what was fixed, as one undo step, if that code is still unchanged."""
        fix = self._fix
        if fix is None or self._fix_panel.isHidden():
            return
        cursor = fix.target.replace(fix.new_text)
        self._close_diff()
        if cursor is None:
            self._say("The code changed while the fix was shown; run Fix again.")
            return
        self._editor.setTextCursor(cursor)
        self._error_input.clear()
        self._say("Fix applied. Undo takes it back.")

    def discard_fix(self) -> None:
        """Close the diff; the document, its undo stack and its modified flag stay exactly as they are."""
        self._close_diff()
        self._say("Fix discarded.")

    # --- running a job -------------------------------------------------------------------------------------------

    def _say(self, text: str) -> None:
        self._message.setText(text)
        self.statusMessage.emit(text)

    def _start_job(self, kind: str, request: CodeRequest, message: str) -> None:
        self._job_kind = kind
        self._received = ""
        if kind in ("complete", "generate"):
            self._was_read_only = self._editor.isReadOnly()
            self._editor.setReadOnly(True)  # nothing may slip into the middle of the AI's undo step
        self._jobs.start(request, self.settings.sampler)
        self._say(message)

    def _end_job(self) -> None:
        """Forget the running job (nothing it still produces lands) and give the editor back."""
        self._jobs.discard()
        kind, self._job_kind = self._job_kind, ""
        if not kind:
            return
        if kind in ("complete", "generate"):
            self._editor.setReadOnly(self._was_read_only)
        else:
            self._fix = None  # a fix job that ended shows its diff from the target _finish kept
        self._insertion = None

    def _on_text(self, text: str) -> None:
        self._received += text
        if self._show_received(final=False):
            self._finish("natural end")

    def _on_finished(self, stats: dict[str, Any]) -> None:
        self._show_received(final=True)
        self._finish(str(stats.get("finish_reason", "")))

    def _on_failed(self, message: str) -> None:
        if self._insertion is not None:
            self._insertion.roll_back()
        self._end_job()
        self._say(message)

    def _show_received(self, final: bool) -> bool:
        """Bring the document up to date with the answer so far; True when the answer needs nothing more."""
        insertion = self._insertion
        if self._job_kind == "complete" and insertion is not None:
            kept, done = completion_extent(self._received, self._completion_indent, self._single_line, final)
            text = self._received[:kept]
            insertion.show(text.rstrip() if final or done else text)
            return done
        if self._job_kind == "generate" and insertion is not None:
            lines, done = code_lines_so_far(self._received, final)
            add_indent = bool(lines) and not leading_whitespace(lines[0])
            indent = self._generate_indent if add_indent else ""
            insertion.show("".join("\n" + (indent + line if line.strip() else line) for line in lines))
            return done
        if self._job_kind == "fix":
            _code, closed = fenced_code(self._received)
            return closed
        return False

    def _finish(self, finish_reason: str) -> None:
        kind = self._job_kind
        insertion = self._insertion
        fix = self._fix
        wrote = bool(insertion and insertion.text)
        received = self._received
        self._end_job()
        if kind == "fix":
            if fix is not None:
                self._show_fix(fix, received, cut_short=finish_reason == "length")
        elif wrote:
            self._say("Code inserted. Undo takes it back." if kind == "generate" else "Completed. Undo takes it back.")
        else:
            if insertion is not None:
                insertion.roll_back()  # whitespace that was taken back again leaves no empty undo step
            self._say("The model wrote no code here." if kind == "generate" else "The model had nothing to add here.")

    # --- the fix diff --------------------------------------------------------------------------------------------

    def _show_fix(self, fix: _Fix, answer: str, cut_short: bool) -> None:
        code = final_code(answer)
        if not code.strip():
            self._say("The model returned no code to compare.")
            return
        self._fix = fix
        original = fix.target.original
        fix.new_text = fit_replacement(original, code)
        name = os.path.basename(self._file_name) if self._file_name else "code"
        if fix.new_text == original:
            self._fix_panel.show_result("No changes: the model returned the same code.", "", can_accept=True)
        else:
            title = "Suggested fix:" if fix.target.whole_document else "Suggested fix of the selection:"
            if cut_short:
                title += (
                    " The answer reached the length limit, so the end may be missing: check the diff, or raise the"
                    " maximum answer length in Settings."
                )
            self._fix_panel.show_result(title, unified_diff_text(original, fix.new_text, name), can_accept=True)
        self._say("Review the fix, then Accept or Discard.")

    def _close_diff(self) -> None:
        self._fix_panel.close_panel()
        self._fix = None
