"""Ghost-text suggestions as a writer and a programmer meet them: they appear after a pause, never enter the
document until accepted, and go away the moment the user does something else.

Most tests drive the fake model (``fake_session.suggestions`` picks a suggestion by the prefix's end); the last
ones run the real bundled model end to end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QAction, QImage, QTextCursor
from PySide6.QtWidgets import QPlainTextEdit

from assistant.core.recovery import RecoveryStore
from assistant.core.settings import AppSettings
from assistant.engine.completion import InlineRequest
from assistant.gui.documents import DocumentController, Prompter
from assistant.gui.panes.code import CodePane
from assistant.gui.panes.editor import EditorPane
from assistant.gui.panes.ghost_text import (
    DEFAULT_DELAY_MS,
    MAX_DELAY_MS,
    MIN_DELAY_MS,
    GhostTextController,
    adaptive_delay_ms,
    next_word,
)
from assistant.gui.worker import AiClient
from tests.gui.conftest import FakeSession

pytestmark = pytest.mark.gui

WAIT_MS = 5000
REAL_MODEL_WAIT_MS = 120_000


# --- helpers ---------------------------------------------------------------------------------------------------


def _focus(qtbot, pane: EditorPane | CodePane) -> None:
    pane.resize(900, 600)
    pane.show()
    qtbot.waitExposed(pane)
    pane.activateWindow()
    qtbot.waitActive(pane)
    pane.editor.setFocus()
    qtbot.waitUntil(pane.editor.hasFocus, timeout=WAIT_MS)
    pane.editor.setCursorWidth(0)  # no blinking caret, so two screenshots differ only by what is drawn


@pytest.fixture
def editor_pane(qtbot, fake_client: AiClient, app_settings: AppSettings) -> Iterator[EditorPane]:
    pane = EditorPane(fake_client, app_settings)
    qtbot.addWidget(pane)
    _focus(qtbot, pane)
    yield pane
    pane.close()


@pytest.fixture
def code_pane(qtbot, fake_client: AiClient, app_settings: AppSettings) -> Iterator[CodePane]:
    pane = CodePane(fake_client, app_settings)
    qtbot.addWidget(pane)
    pane.set_file_name("add.py")
    _focus(qtbot, pane)
    yield pane
    pane.close()


def type_text(qtbot, editor: QPlainTextEdit, text: str) -> None:
    """Type as a user would, line breaks with the Return key."""
    for number, line in enumerate(text.split("\n")):
        if number:
            qtbot.keyClick(editor, Qt.Key.Key_Return)
        if line:
            qtbot.keyClicks(editor, line)


def wait_for_ghost(qtbot, ghost: GhostTextController, expected: str, timeout: int = WAIT_MS) -> None:
    qtbot.waitUntil(lambda: ghost.ghost_text == expected, timeout=timeout)


def screenshot(editor: QPlainTextEdit) -> QImage:
    return editor.viewport().grab().toImage()


def finished_with_a_suggestion(ghost: GhostTextController) -> bool:
    return bool(ghost.ghost_text.strip()) and not ghost.in_flight


def put_cursor(editor: QPlainTextEdit, position: int) -> None:
    cursor = editor.textCursor()
    cursor.setPosition(position)
    editor.setTextCursor(cursor)


def inline_requests(fake_session: FakeSession) -> list[InlineRequest]:
    return [request for request in fake_session.requests if isinstance(request, InlineRequest)]


def press_ctrl_space(qtbot, editor: QPlainTextEdit) -> None:
    qtbot.keyClick(editor, Qt.Key.Key_Space, Qt.KeyboardModifier.ControlModifier)


class KeyRecorder(QObject):
    """Records the keys that reach a widget, to tell whether the editor passed a key on to its parents."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[int] = []

    def eventFilter(self, _watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.KeyPress:
            self.keys.append(event.key())  # type: ignore[attr-defined]
        return False


# --- seeing a suggestion ---------------------------------------------------------------------------------------


def test_a_pause_in_typing_shows_ghost_text_that_is_drawn_but_not_in_the_document(
    qtbot, editor_pane: EditorPane, fake_session: FakeSession
) -> None:
    editor, ghost = editor_pane.editor, editor_pane.ghost
    type_text(qtbot, editor, "Once upon a time")
    plain = screenshot(editor)

    with qtbot.waitSignal(ghost.ghostShown, timeout=WAIT_MS):
        pass
    wait_for_ghost(qtbot, ghost, " and more")

    assert editor.toPlainText() == "Once upon a time", "ghost text never enters the document"
    assert screenshot(editor) != plain, "the suggestion is drawn after the cursor"
    request = inline_requests(fake_session)[-1]
    assert request == InlineRequest(mode="prose", prefix="Once upon a time", suffix="", pane="editor")
    assert ghost.requests_sent == 1

    qtbot.keyClick(editor, Qt.Key.Key_Escape)
    assert ghost.ghost_text == ""
    assert screenshot(editor) == plain, "Esc leaves the editor exactly as it looked before the suggestion"


def test_the_request_carries_the_text_around_the_cursor_within_limits(
    qtbot, editor_pane: EditorPane, fake_session: FakeSession
) -> None:
    editor = editor_pane.editor
    before, after = "x" * 5000 + " The end of the beginning", "and the rest. " + "y" * 2000
    editor.setPlainText(before + after)
    put_cursor(editor, len(before))
    press_ctrl_space(qtbot, editor)
    wait_for_ghost(qtbot, editor_pane.ghost, " and more")

    request = inline_requests(fake_session)[-1]
    start = len(before) - len(request.prefix)
    assert request.prefix == before[start:], "the text right up to the cursor"
    assert 4000 - 512 < len(request.prefix) <= 4000
    assert start % 512 == 0, "a stable start, so typing on reuses the KV cache"
    assert request.suffix == after[:1000]


def test_the_ghost_grows_as_the_model_writes(qtbot, editor_pane: EditorPane, fake_session: FakeSession) -> None:
    fake_session.delay = 0.1  # 20 ms a character
    fake_session.suggestions = {"slowly": " the ghost text grows"}
    shown: list[str] = []
    editor_pane.ghost.ghostShown.connect(shown.append)
    type_text(qtbot, editor_pane.editor, "It grew slowly")

    wait_for_ghost(qtbot, editor_pane.ghost, " the ghost text grows")
    assert len(shown) > 3 and shown[0] != shown[-1], shown
    assert all(" the ghost text grows".startswith(text) for text in shown)


# --- accepting and dismissing ----------------------------------------------------------------------------------


def test_tab_inserts_exactly_the_suggestion_and_one_undo_takes_it_back(
    qtbot, editor_pane: EditorPane, fake_session: FakeSession
) -> None:
    fake_session.suggestions = {"Hello": " world, how are you"}
    editor, document = editor_pane.editor, editor_pane.editor.document()
    type_text(qtbot, editor, "Hello")
    wait_for_ghost(qtbot, editor_pane.ghost, " world, how are you")
    steps = document.availableUndoSteps()

    qtbot.keyClick(editor, Qt.Key.Key_Tab)

    assert editor.toPlainText() == "Hello world, how are you"
    assert editor.textCursor().position() == len("Hello world, how are you")
    assert document.availableUndoSteps() == steps + 1, "accepting is one undo step of its own"
    editor.undo()
    assert editor.toPlainText() == "Hello"


def test_tab_without_a_suggestion_is_an_ordinary_tab(qtbot, editor_pane: EditorPane) -> None:
    type_text(qtbot, editor_pane.editor, "x")
    qtbot.keyClick(editor_pane.editor, Qt.Key.Key_Tab)  # at once: no suggestion yet
    assert editor_pane.editor.toPlainText() == "x\t"


def test_tab_without_a_suggestion_indents_code_as_before(qtbot, code_pane: CodePane) -> None:
    type_text(qtbot, code_pane.editor, "x")
    qtbot.keyClick(code_pane.editor, Qt.Key.Key_Tab)
    assert code_pane.editor.toPlainText() == "x   ", "the code editor indents with spaces"


def test_escape_dismisses_and_is_not_passed_on_but_without_a_ghost_it_is(qtbot, editor_pane: EditorPane) -> None:
    editor, document = editor_pane.editor, editor_pane.editor.document()
    recorder = KeyRecorder()
    editor_pane.installEventFilter(recorder)
    type_text(qtbot, editor, "The night was")
    wait_for_ghost(qtbot, editor_pane.ghost, " and more")
    steps, modified = document.availableUndoSteps(), document.isModified()

    qtbot.keyClick(editor, Qt.Key.Key_Escape)

    assert editor_pane.ghost.ghost_text == ""
    assert editor.toPlainText() == "The night was"
    assert (document.availableUndoSteps(), document.isModified()) == (steps, modified)
    assert Qt.Key.Key_Escape not in recorder.keys, "Esc that dismissed a suggestion must not also stop a task"

    qtbot.keyClick(editor, Qt.Key.Key_Escape)
    assert Qt.Key.Key_Escape in recorder.keys, "with nothing shown, Esc reaches the pane and window as before"
    editor_pane.removeEventFilter(recorder)


def test_typing_what_the_ghost_says_keeps_the_rest_without_a_new_request(
    qtbot, editor_pane: EditorPane, fake_session: FakeSession
) -> None:
    fake_session.suggestions = {"Hello": " world and more"}
    editor, ghost = editor_pane.editor, editor_pane.ghost
    type_text(qtbot, editor, "Hello")
    wait_for_ghost(qtbot, ghost, " world and more")
    requests = ghost.requests_sent

    type_text(qtbot, editor, " wor")

    assert ghost.ghost_text == "ld and more"
    assert editor.toPlainText() == "Hello wor"
    assert not ghost.waiting and not ghost.in_flight and ghost.requests_sent == requests

    with qtbot.waitSignal(ghost.requestSent, timeout=WAIT_MS) as sent:
        type_text(qtbot, editor, "X")  # not what the ghost says: it goes, and a new suggestion is asked for
        assert ghost.ghost_text == ""
    assert sent.args[0].prefix == "Hello worX"


def test_ctrl_right_accepts_the_next_word_and_leaves_the_rest_shown(
    qtbot, editor_pane: EditorPane, fake_session: FakeSession
) -> None:
    fake_session.suggestions = {"Hello": " brave new world."}
    editor, ghost = editor_pane.editor, editor_pane.ghost
    type_text(qtbot, editor, "Hello")
    wait_for_ghost(qtbot, ghost, " brave new world.")
    steps = editor.document().availableUndoSteps()

    qtbot.keyClick(editor, Qt.Key.Key_Right, Qt.KeyboardModifier.ControlModifier)
    assert editor.toPlainText() == "Hello brave"
    assert ghost.ghost_text == " new world."
    qtbot.keyClick(editor, Qt.Key.Key_Right, Qt.KeyboardModifier.ControlModifier)
    assert editor.toPlainText() == "Hello brave new"
    assert ghost.ghost_text == " world."
    assert editor.document().availableUndoSteps() == steps + 2

    qtbot.keyClick(editor, Qt.Key.Key_Tab)
    assert editor.toPlainText() == "Hello brave new world."


def test_next_word_takes_leading_space_and_one_word_or_punctuation_run() -> None:
    assert next_word(" brave new") == " brave"
    assert next_word("(a, b)") == "("
    assert next_word("\n    return a") == "\n    return"
    assert next_word("   ") == "   "


def test_cursor_moves_clicks_and_focus_changes_dismiss_the_ghost(qtbot, editor_pane: EditorPane) -> None:
    editor, ghost = editor_pane.editor, editor_pane.ghost
    type_text(qtbot, editor, "The rain fell")
    wait_for_ghost(qtbot, ghost, " and more")

    qtbot.keyClick(editor, Qt.Key.Key_Left)
    assert ghost.ghost_text == ""
    assert editor.toPlainText() == "The rain fell"
    assert not ghost.waiting, "moving the cursor is not typing: nothing is asked"

    qtbot.keyClick(editor, Qt.Key.Key_End)
    press_ctrl_space(qtbot, editor)
    wait_for_ghost(qtbot, ghost, " and more")
    qtbot.mouseClick(editor.viewport(), Qt.MouseButton.LeftButton, pos=editor.cursorRect().center())
    assert ghost.ghost_text == ""

    qtbot.keyClick(editor, Qt.Key.Key_End)
    press_ctrl_space(qtbot, editor)
    wait_for_ghost(qtbot, ghost, " and more")
    editor_pane.notes_toggle.setChecked(True)
    editor_pane.memory_input.setFocus()
    qtbot.waitUntil(editor_pane.memory_input.hasFocus, timeout=WAIT_MS)
    assert ghost.ghost_text == ""
    assert editor.toPlainText() == "The rain fell"


def test_undo_while_a_ghost_shows_undoes_the_typing_and_drops_the_ghost(qtbot, editor_pane: EditorPane) -> None:
    editor, ghost = editor_pane.editor, editor_pane.ghost
    editor.setPlainText("Start.")
    put_cursor(editor, len("Start."))
    type_text(qtbot, editor, " More words")
    wait_for_ghost(qtbot, ghost, " and more")

    qtbot.keyClick(editor, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)

    assert editor.toPlainText() == "Start."
    assert ghost.ghost_text == ""
    assert "and more" not in editor.toPlainText()


def test_scrolling_the_cursor_out_of_view_dismisses_the_ghost(qtbot, editor_pane: EditorPane) -> None:
    editor, ghost = editor_pane.editor, editor_pane.ghost
    editor.setPlainText("\n".join(f"Line {number}." for number in range(300)) + "\nThe last")
    put_cursor(editor, len(editor.toPlainText()))
    editor.ensureCursorVisible()
    press_ctrl_space(qtbot, editor)
    wait_for_ghost(qtbot, ghost, " and more")

    editor.verticalScrollBar().setValue(0)

    assert ghost.ghost_text == ""


def test_undo_stack_and_modified_flag_stay_untouched_until_a_suggestion_is_accepted(
    qtbot, editor_pane: EditorPane
) -> None:
    editor, document = editor_pane.editor, editor_pane.editor.document()
    editor.setPlainText("Dear diary,")
    put_cursor(editor, len("Dear diary,"))
    assert not document.isModified() and not document.isUndoAvailable()

    press_ctrl_space(qtbot, editor)
    wait_for_ghost(qtbot, editor_pane.ghost, " and more")

    assert not document.isModified(), "a shown suggestion is not an unsaved change"
    assert not document.isUndoAvailable() and document.availableUndoSteps() == 0
    qtbot.keyClick(editor, Qt.Key.Key_Tab)
    assert document.isModified() and document.availableUndoSteps() == 1


def test_saving_never_writes_the_ghost_text(qtbot, editor_pane: EditorPane, tmp_path: Path) -> None:
    editor = editor_pane.editor
    documents = DocumentController(editor, "editor", Prompter(editor_pane), RecoveryStore())
    path = tmp_path / "story.txt"
    type_text(qtbot, editor, "Chapter one\nIt began")
    wait_for_ghost(qtbot, editor_pane.ghost, " and more")

    documents.path = path
    assert documents.save()

    assert path.read_text(encoding="utf-8") == "Chapter one\nIt began"
    assert "and more" not in editor.toPlainText()
    assert editor_pane.ghost.ghost_text == " and more", "saving does not take the suggestion away"


# --- never stale -----------------------------------------------------------------------------------------------


def test_fast_typing_never_shows_a_suggestion_for_older_text(
    qtbot, editor_pane: EditorPane, fake_session: FakeSession
) -> None:
    fake_session.delay = 0.05  # 10 ms a character: older requests are still writing when the next keys come
    fake_session.suggestions = {
        "The": "ory OLD one",
        "The cat": "x OLD two",
        "The cat sat": "z OLD three",
        "The cat sat on the mat": " NEW and right",
    }

    def expected_for(text: str) -> str:
        return next((value for key, value in fake_session.suggestions.items() if text.endswith(key)), " and more")

    editor, ghost = editor_pane.editor, editor_pane.ghost
    shown: list[tuple[str, str]] = []
    ghost.ghostShown.connect(lambda text: shown.append((editor.toPlainText(), text)))

    for count, chunk in enumerate(("The", " cat", " sat"), 1):
        type_text(qtbot, editor, chunk)
        qtbot.waitUntil(lambda count=count: ghost.requests_sent >= count, timeout=WAIT_MS)
    type_text(qtbot, editor, " on the mat")
    wait_for_ghost(qtbot, ghost, " NEW and right")

    assert shown, "the final suggestion was shown"
    for text, suggestion in shown:
        assert expected_for(text).startswith(suggestion), f"{suggestion!r} was shown for {text!r}"
    assert shown[-1] == ("The cat sat on the mat", " NEW and right")


def test_a_suggestion_asked_for_before_a_cursor_move_never_appears(
    qtbot, editor_pane: EditorPane, fake_session: FakeSession
) -> None:
    fake_session.delay = 0.5  # 100 ms a character
    fake_session.suggestions = {"Hello world": " OLD", "Hello": " NEW"}
    editor, ghost = editor_pane.editor, editor_pane.ghost
    type_text(qtbot, editor, "Hello world")
    qtbot.waitUntil(lambda: ghost.in_flight, timeout=WAIT_MS)

    shown: list[str] = []
    ghost.ghostShown.connect(shown.append)
    for _ in " world":
        qtbot.keyClick(editor, Qt.Key.Key_Left)
    assert not ghost.in_flight, "the request for the old cursor position is dropped"
    press_ctrl_space(qtbot, editor)
    wait_for_ghost(qtbot, ghost, " NEW", timeout=10_000)  # the worker ran the old request first, then this one

    assert all(" NEW".startswith(text) for text in shown), shown
    assert editor.toPlainText() == "Hello world"


# --- when suggestions are asked for ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("intervals", "expected"),
    [
        ([], DEFAULT_DELAY_MS),
        ([0.05, 0.05], DEFAULT_DELAY_MS),
        ([0.01] * 10, MIN_DELAY_MS),
        ([0.1, 0.12, 0.08, 0.1], 250),
        ([0.2] * 8, 500),
        ([0.9] * 8, MAX_DELAY_MS),
    ],
)
def test_the_pause_before_asking_follows_the_typing_speed_within_limits(intervals: list[float], expected: int) -> None:
    assert adaptive_delay_ms(intervals) == expected


def test_a_fast_typist_gets_suggestions_sooner(qtbot, editor_pane: EditorPane) -> None:
    ghost = editor_pane.ghost
    assert ghost.delay_ms == DEFAULT_DELAY_MS
    type_text(qtbot, editor_pane.editor, "Quick typing here")
    assert MIN_DELAY_MS <= ghost.delay_ms < DEFAULT_DELAY_MS
    assert ghost.waiting
    wait_for_ghost(qtbot, ghost, " and more")


def test_no_request_with_a_selection_without_focus_or_with_nothing_written(
    qtbot, editor_pane: EditorPane, fake_session: FakeSession
) -> None:
    editor, ghost = editor_pane.editor, editor_pane.ghost
    messages: list[str] = []
    ghost.message.connect(messages.append)

    press_ctrl_space(qtbot, editor)
    assert messages[-1].startswith("Write a few words first")

    editor.setPlainText("Select me")
    cursor = editor.textCursor()
    cursor.select(QTextCursor.SelectionType.Document)
    editor.setTextCursor(cursor)
    press_ctrl_space(qtbot, editor)
    assert messages[-1] == "Clear the selection to get a suggestion."

    editor_pane.notes_toggle.setChecked(True)
    editor_pane.memory_input.setFocus()
    qtbot.waitUntil(editor_pane.memory_input.hasFocus, timeout=WAIT_MS)
    put_cursor(editor, len("Select me"))
    editor.insertPlainText(" now")  # an edit while the user works elsewhere
    qtbot.waitUntil(lambda: not ghost.waiting, timeout=WAIT_MS)
    assert ghost.requests_sent == 0 and inline_requests(fake_session) == []
    assert ghost.ghost_text == ""


def test_no_suggestion_while_a_writing_task_runs_and_starting_one_removes_the_ghost(
    qtbot, editor_pane: EditorPane, fake_session: FakeSession
) -> None:
    editor, ghost = editor_pane.editor, editor_pane.ghost
    fake_session.delay = 0.02
    type_text(qtbot, editor, "The ship sailed")
    wait_for_ghost(qtbot, ghost, " and more")
    requests = ghost.requests_sent

    with qtbot.waitSignal(editor_pane.busyChanged, timeout=WAIT_MS, check_params_cb=lambda busy: not busy):
        editor_pane.continue_action.trigger()
        assert ghost.ghost_text == "", "a task the user started goes first"

    assert ghost.requests_sent == requests, "the story's own text streaming in asks for nothing"
    assert "and more" not in editor.toPlainText()
    assert editor.toPlainText().startswith("The ship sailed") and "word0" in editor.toPlainText()


def test_the_automatic_suggestions_toggle_follows_and_updates_the_settings(
    qtbot, editor_pane: EditorPane, fake_session: FakeSession, app_settings: AppSettings
) -> None:
    editor, ghost = editor_pane.editor, editor_pane.ghost
    action = editor_pane.findChild(QAction, "editorAutoSuggestAction")
    assert action is not None and action in editor_pane.pane_actions()
    assert action.isCheckable() and action.isChecked() and action.text() == "Automatic suggestions"
    suggest_now = editor_pane.findChild(QAction, "editorSuggestNowAction")
    assert suggest_now in editor_pane.pane_actions() and suggest_now.shortcut().toString() == "Ctrl+Space"

    action.trigger()
    assert not action.isChecked() and not editor_pane.settings.suggest_in_editor
    type_text(qtbot, editor, "Nothing by itself")
    assert not ghost.waiting
    assert ghost.requests_sent == 0

    press_ctrl_space(qtbot, editor)
    wait_for_ghost(qtbot, ghost, " and more")
    assert ghost.requests_sent == 1, "Ctrl+Space asks even when automatic suggestions are off"

    settings = AppSettings(suggest_in_editor=True)
    editor_pane.apply_settings(settings)
    assert action.isChecked() and ghost.enabled
    qtbot.keyClick(editor, Qt.Key.Key_Escape)
    type_text(qtbot, editor, ".")
    qtbot.waitUntil(lambda: ghost.requests_sent == 2, timeout=WAIT_MS)


# --- the code pane ---------------------------------------------------------------------------------------------


def test_code_pane_suggests_at_the_end_of_a_line_and_tab_inserts_it(
    qtbot, code_pane: CodePane, fake_session: FakeSession
) -> None:
    fake_session.suggestions = {"b):\n    ": "return a + b"}
    editor, ghost = code_pane.editor, code_pane.ghost
    type_text(qtbot, editor, "def add(a, b):\n")  # Enter indents the body by itself
    plain = screenshot(editor)
    wait_for_ghost(qtbot, ghost, "return a + b")

    assert editor.toPlainText() == "def add(a, b):\n    "
    assert screenshot(editor) != plain
    request = inline_requests(fake_session)[-1]
    assert (request.mode, request.language, request.pane) == ("code", "python", "code")
    assert request.prefix == "def add(a, b):\n    "

    qtbot.keyClick(editor, Qt.Key.Key_Tab)
    assert editor.toPlainText() == "def add(a, b):\n    return a + b"
    editor.undo()
    assert editor.toPlainText() == "def add(a, b):\n    "


def test_code_pane_multi_line_ghost_keeps_the_highlighting_of_the_code_around_it(
    qtbot, code_pane: CodePane, fake_session: FakeSession
) -> None:
    fake_session.suggestions = {"ret": "urn a + b\n    # done"}
    editor, ghost = code_pane.editor, code_pane.ghost
    editor.setPlainText("def add(a, b):\n    \nprint(add(1, 2))")
    put_cursor(editor, len("def add(a, b):\n    "))
    type_text(qtbot, editor, "ret")
    block = editor.textCursor().block()
    colours_before = [(r.start, r.length, r.format) for r in block.layout().formats()]
    plain = screenshot(editor)
    wait_for_ghost(qtbot, ghost, "urn a + b\n    # done")

    assert editor.toPlainText() == "def add(a, b):\n    ret\nprint(add(1, 2))"
    assert editor.blockCount() == 3, "the ghost's line break is drawn, not inserted"
    with_ghost = screenshot(editor)
    code_pane.highlighter.rehighlight()  # e.g. the language was guessed anew: the ghost keeps its look
    assert screenshot(editor) == with_ghost

    qtbot.keyClick(editor, Qt.Key.Key_Escape)
    assert [(r.start, r.length, r.format) for r in block.layout().formats()] == colours_before
    assert screenshot(editor) == plain

    press_ctrl_space(qtbot, editor)
    wait_for_ghost(qtbot, ghost, "urn a + b\n    # done")
    type_text(qtbot, editor, "ur")
    assert ghost.ghost_text == "n a + b\n    # done"
    assert editor.toPlainText() == "def add(a, b):\n    retur\nprint(add(1, 2))"


def test_code_pane_asks_nothing_mid_line_but_ctrl_space_does(
    qtbot, code_pane: CodePane, fake_session: FakeSession
) -> None:
    editor, ghost = code_pane.editor, code_pane.ghost
    editor.setPlainText("total = compute(values)")
    put_cursor(editor, len("total = "))
    type_text(qtbot, editor, "x")  # "compute(values)" stands right of the cursor
    qtbot.waitUntil(lambda: not ghost.waiting, timeout=WAIT_MS)
    assert ghost.requests_sent == 0 and inline_requests(fake_session) == []

    press_ctrl_space(qtbot, editor)
    wait_for_ghost(qtbot, ghost, " and more")
    assert inline_requests(fake_session)[-1].suffix == "compute(values)"
    qtbot.keyClick(editor, Qt.Key.Key_Escape)

    put_cursor(editor, len("total = xcompute(values"))  # only ")" right of the cursor
    type_text(qtbot, editor, "s")
    qtbot.waitUntil(lambda: ghost.requests_sent == 2, timeout=WAIT_MS)
    wait_for_ghost(qtbot, ghost, " and more")


def test_code_pane_toggle_turns_automatic_suggestions_off(
    qtbot, code_pane: CodePane, fake_session: FakeSession
) -> None:
    action = code_pane.findChild(QAction, "codeAutoSuggestAction")
    assert action is not None and action in code_pane.pane_actions() and action.isChecked()
    action.trigger()
    assert not code_pane.settings.suggest_in_code
    type_text(qtbot, code_pane.editor, "import os\n")
    assert not code_pane.ghost.waiting and code_pane.ghost.requests_sent == 0

    code_pane.apply_settings(AppSettings(suggest_in_code=True))
    assert action.isChecked()
    type_text(qtbot, code_pane.editor, "import sys\n")
    qtbot.waitUntil(lambda: code_pane.ghost.requests_sent == 1, timeout=WAIT_MS)


def test_code_pane_complete_at_cursor_is_not_disturbed_by_suggestions(
    qtbot, code_pane: CodePane, fake_session: FakeSession
) -> None:
    fake_session.words = ["return", " a", " +", " b\n"]
    editor, ghost = code_pane.editor, code_pane.ghost
    type_text(qtbot, editor, "def add(a, b):\n")
    assert editor.toPlainText() == "def add(a, b):\n    "
    wait_for_ghost(qtbot, ghost, " and more")
    requests = ghost.requests_sent

    with qtbot.waitSignal(code_pane.busyChanged, timeout=WAIT_MS, check_params_cb=lambda busy: not busy):
        code_pane.complete_action.trigger()
        assert ghost.ghost_text == ""

    assert editor.toPlainText() == "def add(a, b):\n    return a + b"
    assert ghost.requests_sent == requests and not ghost.waiting


# --- the real model --------------------------------------------------------------------------------------------


def _wait_for_real_suggestion_and_accept_it(qtbot, pane: EditorPane | CodePane, before: str) -> str:
    """Wait for the model's ghost text, check it left the document alone, press Tab; returns the suggestion."""
    qtbot.waitUntil(
        lambda: pane.ghost.ghost_text.strip() != "" and not pane.ghost.in_flight, timeout=REAL_MODEL_WAIT_MS
    )
    suggestion = pane.ghost.ghost_text
    assert pane.editor.toPlainText() == before

    qtbot.keyClick(pane.editor, Qt.Key.Key_Tab)
    assert pane.editor.toPlainText() == before + suggestion
    return suggestion


@pytest.mark.slow
def test_real_model_suggests_how_a_sentence_goes_on_and_tab_takes_it(
    qtbot, real_client: AiClient, app_settings: AppSettings
) -> None:
    pane = EditorPane(real_client, app_settings)
    qtbot.addWidget(pane)
    _focus(qtbot, pane)
    typed = "Once upon a time, there was a"
    type_text(qtbot, pane.editor, typed)

    _wait_for_real_suggestion_and_accept_it(qtbot, pane, typed)
    pane.close()


@pytest.mark.slow
def test_real_model_suggests_the_body_of_a_function(qtbot, real_client: AiClient, app_settings: AppSettings) -> None:
    pane = CodePane(real_client, app_settings)
    qtbot.addWidget(pane)
    pane.set_file_name("add.py")
    _focus(qtbot, pane)
    type_text(qtbot, pane.editor, "def add(a, b):\n")  # Enter indents the body

    suggestion = _wait_for_real_suggestion_and_accept_it(qtbot, pane, "def add(a, b):\n    ")

    assert not suggestion[:1].isspace() and not suggestion.startswith("def add"), suggestion
    namespace: dict[str, object] = {}
    exec(compile(pane.editor.toPlainText(), "add.py", "exec"), namespace)  # what the user now has must run
    assert namespace["add"](2, 3) == 5, suggestion  # type: ignore[operator]
    pane.close()
