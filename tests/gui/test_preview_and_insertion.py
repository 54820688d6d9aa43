"""The two ways a model's text reaches a document: streamed in as one undo step, or previewed and then accepted."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QPlainTextEdit

from assistant.gui.preview_panel import PreviewPanel, TrackedRange
from assistant.gui.streamed_insertion import StreamedInsertion, insert_as_one_step

pytestmark = pytest.mark.gui


@pytest.fixture
def editor(qtbot) -> QPlainTextEdit:
    widget = QPlainTextEdit()
    qtbot.addWidget(widget)
    return widget


def put_cursor(editor: QPlainTextEdit, position: int) -> None:
    cursor = editor.textCursor()
    cursor.setPosition(position)
    editor.setTextCursor(cursor)


# --- streamed insertion ----------------------------------------------------------------------------------------


def test_pieces_of_an_answer_are_one_undo_step_and_the_cursor_follows(editor: QPlainTextEdit) -> None:
    editor.setPlainText("Start. End.")
    put_cursor(editor, len("Start."))
    insertion = StreamedInsertion(editor, len("Start."))
    for piece in (" One", " two", " three."):
        assert insertion.append(piece)
    assert editor.toPlainText() == "Start. One two three. End."
    assert editor.textCursor().position() == len("Start. One two three.")
    editor.undo()
    assert editor.toPlainText() == "Start. End."


def test_an_answer_that_takes_text_back_shows_only_what_it_keeps(editor: QPlainTextEdit) -> None:
    editor.setPlainText("x = ")
    insertion = StreamedInsertion(editor, len("x = "))
    insertion.show("1 +\n")
    insertion.show("1 + 2 😀")  # the line break goes, an emoji (two Qt positions) comes
    assert editor.toPlainText() == "x = 1 + 2 😀"
    insertion.show("1")
    assert editor.toPlainText() == "x = 1"
    insertion.roll_back()
    assert editor.toPlainText() == "x = " and not editor.document().isUndoAvailable()


def test_a_user_edit_in_between_is_its_own_undo_step_and_an_undo_stops_the_insertion(editor: QPlainTextEdit) -> None:
    editor.setPlainText("Story.")
    insertion = StreamedInsertion(editor, len("Story."))
    insertion.append(" The")
    user = QTextCursor(editor.document())
    user.insertText("Title\n")  # the user writes elsewhere while the model writes
    insertion.append(" end.")
    assert editor.toPlainText() == "Title\nStory. The end."
    editor.undo()
    assert editor.toPlainText() == "Title\nStory. The", "the model's text never merges into the user's step"

    assert not insertion.append(" More"), "undone: it writes nothing more"
    assert editor.toPlainText() == "Title\nStory. The"


def test_an_accepted_suggestion_is_one_undo_step_at_the_cursor(editor: QPlainTextEdit) -> None:
    editor.setPlainText("Hello")
    put_cursor(editor, 5)
    insert_as_one_step(editor, " world")
    assert editor.toPlainText() == "Hello world" and editor.textCursor().position() == 11
    editor.undo()
    assert editor.toPlainText() == "Hello"


# --- preview, then accept --------------------------------------------------------------------------------------


def test_accept_replaces_the_tracked_text_wherever_it_moved_as_one_undo_step(editor: QPlainTextEdit) -> None:
    editor.setPlainText("Keep this. Change me. Keep that.")
    cursor = editor.textCursor()
    cursor.setPosition(len("Keep this. "))
    cursor.setPosition(len("Keep this. Change me."), QTextCursor.MoveMode.KeepAnchor)
    target = TrackedRange.of_selection(cursor)
    QTextCursor(editor.document()).insertText(">> ")  # an edit before the range while the result is shown

    replaced = target.replace("Changed.")

    assert replaced is not None
    assert editor.toPlainText() == ">> Keep this. Changed. Keep that."
    editor.undo()
    assert editor.toPlainText() == ">> Keep this. Change me. Keep that."


def test_accept_refuses_when_the_tracked_text_was_edited(editor: QPlainTextEdit) -> None:
    editor.setPlainText("def f():\n    return 1\n")
    target = TrackedRange.of_document(editor.document())
    editor.appendPlainText("# typed while the fix was shown")
    before = editor.toPlainText()
    assert target.replace("def f():\n    return 2\n") is None
    assert editor.toPlainText() == before


def test_the_panel_offers_accept_and_insert_only_for_a_complete_result(qtbot) -> None:
    panel = PreviewPanel("result")
    qtbot.addWidget(panel)
    panel.begin("Rewrite: vivid", "Rewriting…", can_accept=True)
    panel.append("A vivid ")
    assert panel.copy_button.isEnabled() and not panel.accept_button.isEnabled()
    panel.append("line.")
    panel.finish("Done.")
    assert panel.text == "A vivid line." and panel.view.toPlainText() == "A vivid line."
    assert panel.accept_button.isEnabled() and panel.insert_button.isEnabled()
    with qtbot.waitSignal(panel.discardRequested, timeout=1000):
        panel.discard_button.click()
    panel.show_result("No changes", "", can_accept=True)
    assert not panel.accept_button.isEnabled(), "nothing to accept"
    assert panel.findChild(QPlainTextEdit, "resultView") is panel.view
