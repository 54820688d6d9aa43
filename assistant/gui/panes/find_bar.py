"""Find and replace in a plain-text editor (the prose editor's Ctrl+F and Ctrl+H)."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QKeyEvent, QTextCursor, QTextDocument
from PySide6.QtWidgets import (
    QCheckBox,
    QGridLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QToolButton,
    QWidget,
)

from assistant.gui.util import named


class FindBar(QWidget):
    """Find and replace in one plain-text editor; Replace all is a single undo step.

    Esc inside the bar closes it (and is used up there, so the main window does not read it as Stop).

    Signals:
        closed(): the bar was hidden; the editor has the focus back.
    """

    closed = Signal()

    def __init__(self, editor: QPlainTextEdit, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("findBar")
        self._editor = editor
        self.find_input = named(QLineEdit(), "findInput")
        self.find_input.setPlaceholderText("Find")
        self.find_input.setClearButtonEnabled(True)
        self.replace_input = named(QLineEdit(), "replaceInput")
        self.replace_input.setPlaceholderText("Replace with")
        self.case_sensitive = named(QCheckBox("Match case"), "findCaseSensitive")
        self.previous_button = named(QPushButton("Previous"), "findPrevious", "Previous match (Shift+Enter)")
        self.next_button = named(QPushButton("Next"), "findNext", "Next match (Enter)")
        self.replace_button = named(QPushButton("Replace"), "replaceOne")
        self.replace_all_button = named(QPushButton("Replace all"), "replaceAll", "Replace every match (one undo step)")
        self.status_label = named(QLabel(), "findStatus")
        close_button = named(QToolButton(), "findClose", "Close (Esc)")
        close_button.setText("✕")
        close_button.setAutoRaise(True)

        layout = QGridLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.addWidget(self.find_input, 0, 0)
        layout.addWidget(self.previous_button, 0, 1)
        layout.addWidget(self.next_button, 0, 2)
        layout.addWidget(self.case_sensitive, 0, 3)
        layout.addWidget(self.status_label, 0, 4)
        layout.addWidget(close_button, 0, 5)
        layout.addWidget(self.replace_input, 1, 0)
        layout.addWidget(self.replace_button, 1, 1)
        layout.addWidget(self.replace_all_button, 1, 2)
        layout.setColumnStretch(0, 1)
        self._replace_row: list[QWidget] = [self.replace_input, self.replace_button, self.replace_all_button]

        self.find_input.returnPressed.connect(self.find_next)
        self.replace_input.returnPressed.connect(self.replace_current)
        self.next_button.clicked.connect(self.find_next)
        self.previous_button.clicked.connect(self.find_previous)
        self.replace_button.clicked.connect(self.replace_current)
        self.replace_all_button.clicked.connect(self.replace_all)
        self.find_input.textChanged.connect(lambda _text: self.status_label.clear())
        close_button.clicked.connect(self.close_bar)
        for child in (self.find_input, self.replace_input, self.case_sensitive):
            child.installEventFilter(self)
        self.hide()

    def open_bar(self, with_replace: bool) -> None:
        """Show the bar with the selection (when it is one line) as the search text, ready to type."""
        for widget in self._replace_row:
            widget.setVisible(with_replace)
        selected = self._editor.textCursor().selectedText()
        if selected and "\u2029" not in selected:
            self.find_input.setText(selected)
        self.status_label.clear()
        self.show()
        self.find_input.setFocus()
        self.find_input.selectAll()

    def close_bar(self) -> None:
        self.hide()
        self._editor.setFocus()
        self.closed.emit()

    @property
    def replace_visible(self) -> bool:
        return not self.replace_input.isHidden()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        """Esc closes the bar; Shift+Enter in the search field goes to the previous match."""
        if event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent):
            if event.key() == Qt.Key.Key_Escape:
                self.close_bar()
                return True
            shifted = event.modifiers() & Qt.KeyboardModifier.ShiftModifier
            if watched is self.find_input and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and shifted:
                self.find_previous()
                return True
        return super().eventFilter(watched, event)

    def _flags(self, backward: bool = False) -> QTextDocument.FindFlag:
        flags = QTextDocument.FindFlag(0)
        if self.case_sensitive.isChecked():
            flags |= QTextDocument.FindFlag.FindCaseSensitively
        if backward:
            flags |= QTextDocument.FindFlag.FindBackward
        return flags

    def find_next(self) -> bool:
        return self._find(backward=False)

    def find_previous(self) -> bool:
        return self._find(backward=True)

    def _find(self, backward: bool) -> bool:
        """Select the next match, wrapping around the document once; say so when there is none."""
        needle = self.find_input.text()
        if not needle:
            return False
        flags = self._flags(backward)
        if self._editor.find(needle, flags):
            self.status_label.clear()
            return True
        before_wrap = self._editor.textCursor()
        wrapped = QTextCursor(before_wrap)
        wrapped.movePosition(QTextCursor.MoveOperation.End if backward else QTextCursor.MoveOperation.Start)
        self._editor.setTextCursor(wrapped)
        if self._editor.find(needle, flags):
            self.status_label.setText("Wrapped around")
            return True
        self._editor.setTextCursor(before_wrap)
        self.status_label.setText("No matches")
        return False

    def _selection_is_match(self) -> bool:
        selected = self._editor.textCursor().selectedText()
        needle = self.find_input.text()
        if self.case_sensitive.isChecked():
            return selected == needle
        return selected.casefold() == needle.casefold()

    def replace_current(self) -> bool:
        """Replace the selected match (if the selection is one), then move to the next match."""
        if self.find_input.text() and self._selection_is_match():
            cursor = self._editor.textCursor()
            cursor.insertText(self.replace_input.text())
            self._editor.setTextCursor(cursor)
        return self.find_next()

    def replace_all(self) -> int:
        """Replace every match as ONE undo step; returns how many were replaced."""
        needle = self.find_input.text()
        if not needle:
            return 0
        document = self._editor.document()
        replacement = self.replace_input.text()
        flags = self._flags()
        match = document.find(needle, 0, flags)
        if match.isNull():
            self.status_label.setText("No matches")
            return 0
        edit_block = QTextCursor(document)
        edit_block.beginEditBlock()  # started only once there is a change, so "no matches" adds no undo step
        replaced = 0
        while not match.isNull():
            match.insertText(replacement)
            replaced += 1
            match = document.find(needle, match, flags)
        edit_block.endEditBlock()
        self.status_label.setText(f"Replaced {replaced:,}")
        return replaced
