"""Preview, then Accept or Discard: a model's result is shown first, and the document changes only on Accept.

The editor's rewrites, translations, poems and summaries and the code pane's fixes all go through the same two
pieces: :class:`PreviewPanel` shows the result (streaming in, or finished) with its buttons, and
:class:`TrackedRange` remembers the text Accept will replace, follows it through later edits, and replaces it as
one undo step only if it is still exactly what the result was made from. Discard never touches the document, its
undo stack or its modified flag.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QGuiApplication, QTextCursor, QTextDocument
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from assistant.gui.qt_text import plain_text_of
from assistant.gui.util import named


class TrackedRange:
    """The text a result will replace: a selection (its ends follow edits) or the whole document."""

    def __init__(self, document: QTextDocument, start: int, end: int, whole_document: bool = False) -> None:
        self._document = document
        self._start = QTextCursor(document)
        self._start.setPosition(start)
        self._end = QTextCursor(document)
        self._end.setPosition(end)
        self._end.setKeepPositionOnInsert(True)  # text typed right after the range stays outside it
        self.whole_document = whole_document
        self.original = self.current_text()
        """The text as it was when the result was asked for."""

    @classmethod
    def of_selection(cls, cursor: QTextCursor) -> TrackedRange:
        return cls(cursor.document(), cursor.selectionStart(), cursor.selectionEnd())

    @classmethod
    def of_document(cls, document: QTextDocument) -> TrackedRange:
        return cls(document, 0, document.characterCount() - 1, whole_document=True)

    def cursor(self) -> QTextCursor:
        """A cursor selecting the range as it is now."""
        cursor = QTextCursor(self._document)
        if self.whole_document:
            cursor.select(QTextCursor.SelectionType.Document)
        else:
            cursor.setPosition(self._start.position())
            cursor.setPosition(self._end.position(), QTextCursor.MoveMode.KeepAnchor)
        return cursor

    def current_text(self) -> str:
        return self._document.toPlainText() if self.whole_document else plain_text_of(self.cursor())

    def replace(self, text: str) -> QTextCursor | None:
        """Put ``text`` in place of the range as one undo step; None (nothing changed) if the range was edited."""
        if self.current_text() != self.original:
            return None
        target = self.cursor()
        target.beginEditBlock()
        target.insertText(text)
        target.endEditBlock()
        return target


class PreviewPanel(QFrame):
    """A result to look at before it touches the document: title, status line, the text, and the buttons.

    Accept and Insert are enabled once the result is complete and has text; Copy as soon as there is text.
    Object names start with the ``prefix`` given (``resultPanel``, ``resultView``, ``resultAccept`` …), so tests and
    accessibility tools find each panel's parts.

    Signals:
        acceptRequested(): Accept was clicked (replace the text the result was made from).
        insertRequested(): Insert was clicked (put the result at the cursor).
        discardRequested(): Discard was clicked (drop the result, leave the document alone).
    """

    acceptRequested = Signal()
    insertRequested = Signal()
    discardRequested = Signal()

    def __init__(
        self,
        prefix: str,
        can_insert: bool = True,
        can_copy: bool = True,
        accept_tip: str = "Replace the original text",
        discard_tip: str = "Drop this result",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName(f"{prefix}Panel")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title_label = named(QLabel(), f"{prefix}Title")
        self.title_label.setWordWrap(True)
        font = self.title_label.font()
        font.setBold(True)
        self.title_label.setFont(font)
        self.status_label = named(QLabel(), f"{prefix}Status")
        self.status_label.setWordWrap(True)
        self.view = named(QPlainTextEdit(), f"{prefix}View")
        self.view.setReadOnly(True)
        self.accept_button = named(QPushButton("Accept"), f"{prefix}Accept", accept_tip)
        self.insert_button = named(QPushButton("Insert"), f"{prefix}Insert", "Insert at the cursor")
        self.copy_button = named(QPushButton("Copy"), f"{prefix}Copy", "Copy to the clipboard")
        self.discard_button = named(QPushButton("Discard"), f"{prefix}Discard", discard_tip)
        self.insert_button.setVisible(can_insert)
        self.copy_button.setVisible(can_copy)

        buttons = QHBoxLayout()
        for button in (self.accept_button, self.insert_button, self.copy_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.discard_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.title_label)
        layout.addWidget(self.status_label)
        layout.addWidget(self.view, 1)
        layout.addLayout(buttons)

        self.accept_button.clicked.connect(self.acceptRequested)
        self.insert_button.clicked.connect(self.insertRequested)
        self.discard_button.clicked.connect(self.discardRequested)
        self.copy_button.clicked.connect(self.copy_to_clipboard)
        self._text = ""
        self._running = False
        self.hide()

    @property
    def text(self) -> str:
        """The result as shown (what Insert and Copy use)."""
        return self._text

    @property
    def running(self) -> bool:
        """True while the result is still being written (Accept and Insert wait for the end)."""
        return self._running

    def begin(self, title: str, status: str, can_accept: bool) -> None:
        """Clear and show the panel for a result that is about to stream in."""
        self._text = ""
        self._running = True
        self.view.clear()
        self.title_label.setText(title)
        self.set_status(status)
        self.accept_button.setVisible(can_accept)
        self._update_buttons()
        self.show()

    def append(self, text: str) -> None:
        """Add streamed text at the end without re-setting (and re-laying out) what is already there."""
        self._text += text
        cursor = self.view.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(text)
        self.view.setTextCursor(cursor)
        self.view.ensureCursorVisible()
        self._update_buttons()

    def show_result(self, title: str, text: str, can_accept: bool, status: str = "") -> None:
        """Show a finished result at once (a fix's diff)."""
        self.begin(title, status, can_accept)
        self._text = text
        self.view.setPlainText(text)
        self.finish(status)

    def set_status(self, status: str) -> None:
        self.status_label.setText(status)
        self.status_label.setVisible(bool(status))

    def finish(self, status: str) -> None:
        """The result is complete (or stopped, or failed with ``status`` saying why)."""
        self._running = False
        self.set_status(status)
        self._update_buttons()

    def close_panel(self) -> None:
        self._text = ""
        self._running = False
        self.view.clear()
        self.hide()

    def copy_to_clipboard(self) -> None:
        QGuiApplication.clipboard().setText(self._text.strip())
        self.set_status("Copied to the clipboard.")

    def _update_buttons(self) -> None:
        has_text = bool(self._text.strip())
        ready = has_text and not self._running
        self.insert_button.setEnabled(ready)
        self.accept_button.setEnabled(ready)
        self.copy_button.setEnabled(has_text)
