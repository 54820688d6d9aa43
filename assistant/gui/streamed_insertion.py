"""Text the model writes straight into a document as it arrives, kept as ONE undo step however many pieces it has.

Continue story, Complete at cursor, Generate from comment and an accepted ghost suggestion all write through
:class:`StreamedInsertion`, so a single Undo always takes back exactly what the model wrote.
"""

from __future__ import annotations

import os

from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QPlainTextEdit

from assistant.gui.qt_text import utf16_length


class StreamedInsertion:
    """The model's text at one place in an editor's document, growing (or shrinking) as the answer streams.

    The first change opens an edit block; later ones join it (``joinPreviousEditBlock``) while the top of the undo
    stack is still this insertion's, so Undo removes all of it at once. If the user edited in between, the next
    piece opens a block of its own rather than merging into the user's edit; if the insertion was undone meanwhile,
    it writes nothing more (``show`` returns False). The editor's cursor follows the text while it sits at the end
    of the insertion with nothing selected.
    """

    def __init__(self, editor: QPlainTextEdit, position: int) -> None:
        self._editor = editor
        self._cursor = QTextCursor(editor.document())
        self._cursor.setPosition(position)
        self._undo_steps = -1
        """The document's undo step count after this insertion's last change; -1 before the first."""
        self.text = ""
        """What this insertion has put into the document so far."""
        self.writing = False
        """True while this insertion itself changes the document, so listeners can tell its edits from others."""

    @property
    def started(self) -> bool:
        return self._undo_steps >= 0

    @property
    def position(self) -> int:
        """Where the inserted text ends now (it moves with edits made before it)."""
        return self._cursor.position()

    def append(self, text: str) -> bool:
        """Add ``text`` after what was inserted; False (nothing written) when the insertion was undone."""
        return self.show(self.text + text)

    def show(self, text: str) -> bool:
        """Make the inserted text ``text``: add what is new, take back what the answer no longer has.

        False (and nothing written) when the user undid the insertion meanwhile: it must not write into text
        that is gone.
        """
        # The usual case is a longer answer: startswith spares a character-by-character comparison.
        common = len(self.text) if text.startswith(self.text) else len(os.path.commonprefix([self.text, text]))
        removed, added = self.text[common:], text[common:]
        if not removed and not added:
            return True
        document = self._editor.document()
        steps_now = document.availableUndoSteps()
        if self.started and steps_now < self._undo_steps:
            return False
        view = self._editor.textCursor()
        follow = not view.hasSelection() and view.position() == self._cursor.position()
        self.writing = True
        try:
            if steps_now == self._undo_steps:
                self._cursor.joinPreviousEditBlock()
            else:  # the first piece, or the user edited in between: a block of its own
                self._cursor.beginEditBlock()
            if removed:
                end = self._cursor.position()
                self._cursor.setPosition(end - utf16_length(removed), QTextCursor.MoveMode.KeepAnchor)
                self._cursor.removeSelectedText()
            if added:
                self._cursor.insertText(added)
            self._cursor.endEditBlock()
        finally:
            self.writing = False
        self._undo_steps = document.availableUndoSteps()
        self.text = text
        if follow:
            self._editor.setTextCursor(QTextCursor(self._cursor))
            self._editor.ensureCursorVisible()
        return True

    def roll_back(self) -> None:
        """Take the insertion out again with one Undo, if its step is still the newest; else leave the text."""
        document = self._editor.document()
        if self.started and document.availableUndoSteps() == self._undo_steps:
            self.writing = True
            try:
                document.undo()
            finally:
                self.writing = False
        self._undo_steps = -1
        self.text = ""


def insert_as_one_step(editor: QPlainTextEdit, text: str) -> None:
    """Insert ``text`` at the editor's cursor as one undo step of its own, the cursor after it."""
    cursor = editor.textCursor()
    cursor.clearSelection()
    editor.setTextCursor(cursor)
    StreamedInsertion(editor, cursor.position()).show(text)
