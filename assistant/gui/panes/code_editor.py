"""The code editor widget: line numbers, the current line shaded, spaces for tabs, and indentation that follows
the code's blocks as the language's own editors do (VS Code, the JetBrains IDEs).

The indentation rules are plain functions of the line's text (:func:`line_break_for`,
:func:`matching_opener_indent`), so they are tested without a window; the widget only applies them to keys.
"""

from __future__ import annotations

import re

from PySide6.QtCore import QRect, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QKeyEvent, QPainter, QPaintEvent, QPalette, QResizeEvent, QTextCursor
from PySide6.QtWidgets import QPlainTextEdit, QWidget

from assistant.core.completion_rules import TAB_WIDTH, leading_whitespace

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
