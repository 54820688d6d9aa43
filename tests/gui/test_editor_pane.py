"""The prose editor pane as a writer uses it: counts, find/replace, and every assist with its undo behaviour.

Most tests drive a fake model (fast, predictable words); the last ones run the real bundled model end to end.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QTextCursor
from PySide6.QtWidgets import QComboBox, QDialog, QDialogButtonBox, QLabel, QLineEdit, QPlainTextEdit, QPushButton

from assistant.core.errors import ModelError
from assistant.core.prompts import PoemRequest, RewriteRequest, StoryRequest, SummaryRequest, TranslateRequest
from assistant.core.settings import AppSettings, SamplerSettings
from assistant.gui.panes.editor import EditorPane
from assistant.gui.worker import AiClient

pytestmark = pytest.mark.gui

WAIT_MS = 5000


# --- helpers ---------------------------------------------------------------------------------------------------


@pytest.fixture
def pane(qtbot, fake_client: AiClient, app_settings: AppSettings) -> Iterator[EditorPane]:
    editor_pane = EditorPane(fake_client, app_settings)
    qtbot.addWidget(editor_pane)
    editor_pane.resize(1000, 700)
    editor_pane.show()
    qtbot.waitExposed(editor_pane)
    yield editor_pane
    editor_pane.close()


def label(pane: EditorPane, name: str) -> QLabel:
    found = pane.findChild(QLabel, name)
    assert found is not None, name
    return found


def button(pane: EditorPane, name: str) -> QPushButton:
    found = pane.findChild(QPushButton, name)
    assert found is not None, name
    return found


def result_view_text(pane: EditorPane) -> str:
    view = pane.findChild(QPlainTextEdit, "resultView")
    assert view is not None
    return view.toPlainText()


def put_cursor(pane: EditorPane, position: int) -> None:
    cursor = pane.editor.textCursor()
    cursor.setPosition(position)
    pane.editor.setTextCursor(cursor)


def select(pane: EditorPane, fragment: str) -> tuple[int, int]:
    """Select the first occurrence of ``fragment`` as a user would with the mouse; returns its range."""
    start = pane.editor.toPlainText().index(fragment)
    cursor = pane.editor.textCursor()
    cursor.setPosition(start)
    cursor.setPosition(start + len(fragment), QTextCursor.MoveMode.KeepAnchor)
    pane.editor.setTextCursor(cursor)
    return start, start + len(fragment)


def run_until_idle(qtbot, pane: EditorPane, start, timeout: int = WAIT_MS) -> None:
    """Run ``start()`` and wait until the pane's job has ended."""
    with qtbot.waitSignal(pane.busyChanged, timeout=timeout, check_params_cb=lambda busy: not busy):
        start()


def accept_dialog(dialog: QDialog) -> None:
    box = dialog.findChild(QDialogButtonBox)
    assert box is not None
    ok_button = box.button(QDialogButtonBox.StandardButton.Ok)
    assert ok_button.isEnabled()
    ok_button.click()


# --- counts ----------------------------------------------------------------------------------------------------


def test_counts_show_words_and_characters_of_document_then_of_selection(qtbot, pane: EditorPane) -> None:
    counts = label(pane, "editorCounts")
    pane.editor.setPlainText("One two three.\nFour five")
    qtbot.waitUntil(lambda: counts.text() == "5 words · 23 characters", timeout=WAIT_MS)

    select(pane, "two three")
    qtbot.waitUntil(lambda: counts.text() == "2 words · 9 characters selected", timeout=WAIT_MS)

    put_cursor(pane, 0)
    qtbot.waitUntil(lambda: counts.text() == "5 words · 23 characters", timeout=WAIT_MS)


def test_counts_of_a_long_document_update_after_typing_pauses(qtbot, pane: EditorPane) -> None:
    counts = label(pane, "editorCounts")
    before = counts.text()
    pane.editor.setPlainText("lorem " * 20_000)
    assert counts.text() == before, "counting is deferred to a short timer, not done on every keystroke"
    qtbot.waitUntil(lambda: counts.text() == "20,000 words · 120,000 characters", timeout=WAIT_MS)


# --- find and replace ------------------------------------------------------------------------------------------


def test_find_next_selects_each_match_and_wraps_around(qtbot, pane: EditorPane) -> None:
    pane.editor.setPlainText("cat dog Cat bird cat")
    put_cursor(pane, 0)
    pane.find_action.trigger()
    assert pane.find_bar.isVisible() and not pane.find_bar.replace_visible
    pane.find_bar.find_input.setText("cat")

    found: list[int] = []
    for _ in range(4):
        assert pane.find_bar.find_next()
        found.append(pane.editor.textCursor().selectionStart())
    assert found == [0, 8, 17, 0], "case-insensitive by default, and it wraps to the top"
    assert label(pane, "findStatus").text() == "Wrapped around"

    pane.find_bar.case_sensitive.setChecked(True)
    pane.find_bar.find_input.setText("Cat")
    assert pane.find_bar.find_next()
    assert pane.editor.textCursor().selectionStart() == 8
    assert pane.find_bar.find_previous()
    assert pane.editor.textCursor().selectionStart() == 8, "the only match, found again going backwards"

    pane.find_bar.find_input.setText("zebra")
    assert not pane.find_bar.find_next()
    assert label(pane, "findStatus").text() == "No matches"


def test_replace_and_replace_all_where_one_undo_restores_everything(qtbot, pane: EditorPane) -> None:
    original = "the cat sat. The cat ran. the dog"
    pane.editor.setPlainText(original)
    put_cursor(pane, 0)
    pane.replace_action.trigger()
    assert pane.find_bar.replace_visible
    pane.find_bar.find_input.setText("cat")
    pane.find_bar.replace_input.setText("fox")

    assert pane.find_bar.find_next()
    pane.find_bar.replace_current()
    assert pane.editor.toPlainText() == "the fox sat. The cat ran. the dog"
    pane.editor.undo()
    assert pane.editor.toPlainText() == original

    pane.find_bar.find_input.setText("the")
    pane.find_bar.replace_input.setText("a")
    button(pane, "replaceAll").click()
    assert pane.editor.toPlainText() == "a cat sat. a cat ran. a dog"
    assert label(pane, "findStatus").text() == "Replaced 3"

    pane.editor.undo()
    assert pane.editor.toPlainText() == original, "Replace all is a single undo step"
    assert not pane.editor.document().isUndoAvailable()


def test_ctrl_f_and_ctrl_h_open_the_find_bar_and_esc_closes_it(qtbot, pane: EditorPane) -> None:
    pane.activateWindow()
    qtbot.waitActive(pane)
    pane.editor.setFocus()
    qtbot.keyClick(pane.editor, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert pane.find_bar.isVisible() and not pane.find_bar.replace_visible
    assert pane.find_bar.find_input.hasFocus()

    qtbot.keyClick(pane.find_bar.find_input, Qt.Key.Key_Escape)
    assert not pane.find_bar.isVisible()
    assert pane.editor.hasFocus()

    qtbot.keyClick(pane.editor, Qt.Key.Key_H, Qt.KeyboardModifier.ControlModifier)
    assert pane.find_bar.isVisible() and pane.find_bar.replace_visible


# --- story notes and settings ----------------------------------------------------------------------------------


def test_story_metadata_round_trips_and_only_user_edits_signal_a_change(qtbot, pane: EditorPane) -> None:
    changes: list[None] = []
    pane.metadataChanged.connect(lambda: changes.append(None))
    pane.set_story_metadata({"memory": "Mara smuggles maps.", "authors_note": "Keep it tense."})
    assert changes == [], "loading a document's notes is not an edit"
    assert pane.story_metadata() == {"memory": "Mara smuggles maps.", "authors_note": "Keep it tense."}
    assert pane.memory_input.isVisible(), "notes that exist are shown"

    pane.authors_note_input.moveCursor(QTextCursor.MoveOperation.End)
    qtbot.keyClicks(pane.authors_note_input, " Night.")
    assert changes
    assert pane.story_metadata()["authors_note"] == "Keep it tense. Night."

    pane.set_story_metadata({})
    assert pane.story_metadata() == {"memory": "", "authors_note": ""}


def test_apply_settings_sets_the_editor_font(pane: EditorPane) -> None:
    settings = AppSettings(editor_font_family="Serif", editor_font_size=17)
    pane.apply_settings(settings)
    assert pane.editor.font().pointSize() == 17
    assert pane.editor.font().family() == "Serif"
    assert pane.settings is settings


# --- continue story --------------------------------------------------------------------------------------------


def test_continue_story_streams_at_the_cursor_and_one_undo_removes_it(qtbot, pane: EditorPane, fake_session) -> None:
    fake_session.words = [" The", " night", " was", " cold", " and", " the", " sea", " was", " loud."]
    fake_session.delay = 0.02  # slow enough that the answer arrives in several chunks
    pane.editor.setPlainText("It was late. Later, she slept.")
    pane.editor.document().setModified(False)
    put_cursor(pane, len("It was late."))
    pane.set_story_metadata({"memory": "Mara is a smuggler.", "authors_note": "Keep it tense."})

    pane.continue_action.trigger()
    assert pane.busy and button(pane, "editorStop").isEnabled()
    qtbot.waitUntil(lambda: " The" in pane.editor.toPlainText() and pane.busy, timeout=WAIT_MS)  # live, mid-stream
    qtbot.waitUntil(lambda: not pane.busy, timeout=WAIT_MS)

    assert pane.editor.toPlainText() == "It was late. The night was cold and the sea was loud. Later, she slept."
    assert pane.editor.textCursor().position() == len("It was late. The night was cold and the sea was loud.")
    assert not button(pane, "editorStop").isEnabled()
    assert fake_session.requests[-1] == StoryRequest(
        story="It was late.", memory="Mara is a smuggler.", authors_note="Keep it tense."
    )

    pane.editor.undo()
    assert pane.editor.toPlainText() == "It was late. Later, she slept.", "the whole continuation is one undo step"
    assert not pane.editor.document().isUndoAvailable()


def test_continue_story_does_not_double_the_space_after_a_space(qtbot, pane: EditorPane, fake_session) -> None:
    fake_session.words = [" The", " end."]
    pane.editor.setPlainText("It was late. ")
    put_cursor(pane, len("It was late. "))
    run_until_idle(qtbot, pane, pane.continue_story)
    assert pane.editor.toPlainText() == "It was late. The end."


def test_continue_story_on_an_empty_document_says_what_to_do(qtbot, pane: EditorPane, fake_session) -> None:
    with qtbot.waitSignal(pane.statusMessage, timeout=WAIT_MS) as message:
        pane.continue_story()
    assert "Write a line or two first" in message.args[0]
    assert fake_session.requests == [] and not pane.busy


def test_stop_mid_stream_keeps_what_was_written(qtbot, fake_client, fake_session, app_settings) -> None:
    fake_session.words = [f" w{index}" for index in range(2000)]
    app_settings.sampler = SamplerSettings(max_new_tokens=2000)
    pane = EditorPane(fake_client, app_settings)
    qtbot.addWidget(pane)
    pane.editor.setPlainText("Start.")
    put_cursor(pane, len("Start."))

    pane.continue_story()
    qtbot.waitUntil(lambda: " w3" in pane.editor.toPlainText(), timeout=WAIT_MS)
    run_until_idle(qtbot, pane, button(pane, "editorStop").click, timeout=2000)

    written = pane.editor.toPlainText()
    assert written.startswith("Start. w0 w1 w2 w3")
    assert len(written.split()) < 2000, "Stop ended the answer early"
    assert label(pane, "assistStatus").text() == "Stopped."
    pane.editor.undo()
    assert pane.editor.toPlainText() == "Start."
    pane.close()


def test_an_error_is_shown_and_the_document_is_untouched(qtbot, pane: EditorPane, fake_session) -> None:
    fake_session.fail_with = ModelError("Not enough memory to generate this answer.")
    pane.editor.setPlainText("A quiet morning.")
    pane.editor.document().setModified(False)
    put_cursor(pane, len("A quiet morning."))

    with qtbot.waitSignal(pane.statusMessage, timeout=WAIT_MS, check_params_cb=lambda text: "memory" in text):
        pane.continue_story()
    qtbot.waitUntil(lambda: not pane.busy, timeout=WAIT_MS)
    assert label(pane, "assistStatus").text() == "Not enough memory to generate this answer."
    assert pane.editor.toPlainText() == "A quiet morning."
    assert not pane.editor.document().isModified()
    assert not pane.editor.document().isUndoAvailable()

    select(pane, "quiet")
    run_until_idle(qtbot, pane, lambda: pane.rewrite_selection("vivid"))
    assert label(pane, "resultStatus").text() == "Not enough memory to generate this answer."
    assert not button(pane, "resultAccept").isEnabled()
    assert pane.editor.toPlainText() == "A quiet morning."


# --- poem and summary ------------------------------------------------------------------------------------------


def test_poem_dialog_writes_into_the_result_panel_and_insert_inserts_it(qtbot, pane: EditorPane, fake_session) -> None:
    fake_session.words = ["Rain ", "on ", "tin\n", "roofs."]
    pane.editor.setPlainText("Title\n\nEnd")
    pane.editor.document().setModified(False)
    put_cursor(pane, len("Title\n\n"))

    pane.poem_action.trigger()
    dialog = pane.findChild(QDialog, "poemDialog")
    assert dialog is not None and dialog.isVisible()
    theme = dialog.findChild(QLineEdit, "poemTheme")
    form = dialog.findChild(QComboBox, "poemForm")
    style = dialog.findChild(QLineEdit, "poemStyle")
    assert theme is not None and form is not None and style is not None
    assert form.isEditable() and form.findText("haiku") >= 0
    qtbot.keyClicks(theme, "autumn rain")
    form.setCurrentText("haiku")
    qtbot.keyClicks(style, "quiet")
    run_until_idle(qtbot, pane, lambda: accept_dialog(dialog))

    assert fake_session.requests[-1] == PoemRequest(theme="autumn rain", form="haiku", style="quiet")
    assert pane.result_panel.isVisible()
    assert result_view_text(pane) == "Rain on tin\nroofs."
    assert pane.editor.toPlainText() == "Title\n\nEnd", "a poem waits in the panel until Insert"
    assert not pane.editor.document().isModified()

    button(pane, "resultInsert").click()
    assert pane.editor.toPlainText() == "Title\n\nRain on tin\nroofs.End"
    pane.editor.undo()
    assert pane.editor.toPlainText() == "Title\n\nEnd"

    button(pane, "resultCopy").click()
    assert QGuiApplication.clipboard().text() == "Rain on tin\nroofs."


def test_summarize_the_whole_document_shows_progress_then_the_summary(
    qtbot, pane: EditorPane, fake_session, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_without_progress = fake_session.run

    def run_reporting_parts(request, settings, cancel, progress=None):
        if progress is not None:
            progress("Summarizing part 2 of 9", 0.2)
        return run_without_progress(request, settings, cancel, progress)

    monkeypatch.setattr(fake_session, "run", run_reporting_parts)
    fake_session.words = [f"gist{index} " for index in range(10)]
    fake_session.delay = 0.03
    pane.editor.setPlainText("Chapter one.\nChapter two.")
    messages: list[str] = []
    pane.statusMessage.connect(messages.append)

    pane.summarize_action.trigger()
    qtbot.waitUntil(lambda: label(pane, "resultStatus").text() == "Summarizing part 2 of 9", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: not pane.busy, timeout=WAIT_MS)

    request = fake_session.requests[-1]
    assert isinstance(request, SummaryRequest)
    assert request.text == "Chapter one.\nChapter two."
    assert "Summarizing part 2 of 9" in messages
    assert result_view_text(pane) == "".join(fake_session.words)
    assert label(pane, "resultTitle").text() == "Summary of the document"
    assert label(pane, "resultStatus").text() == "Done."
    assert pane.editor.toPlainText() == "Chapter one.\nChapter two."


def test_summarize_a_selection_sends_only_the_selection(qtbot, pane: EditorPane, fake_session) -> None:
    pane.editor.setPlainText("Intro.\nThe middle part.\nOutro.")
    select(pane, "The middle part.\nOutro")
    run_until_idle(qtbot, pane, pane.summarize)
    request = fake_session.requests[-1]
    assert isinstance(request, SummaryRequest)
    assert request.text == "The middle part.\nOutro"
    assert label(pane, "resultTitle").text() == "Summary of the selection"
    assert result_view_text(pane) == "".join(fake_session.words)


# --- rewrite and translate -------------------------------------------------------------------------------------


def test_rewrite_accept_replaces_the_original_selection_even_after_edits_elsewhere(
    qtbot, pane: EditorPane, fake_session
) -> None:
    fake_session.words = ["Short", " one."]
    original = "Keep this. Rewrite me, please, if you can. Keep that."
    pane.editor.setPlainText(original)
    select(pane, "Rewrite me, please, if you can.")

    pane.rewrite_selection("shorter")
    put_cursor(pane, 0)  # while the model writes, the user types at the top and moves away
    qtbot.keyClicks(pane.editor, "Intro. ")
    put_cursor(pane, len(pane.editor.toPlainText()))
    qtbot.waitUntil(lambda: not pane.busy, timeout=WAIT_MS)

    assert fake_session.requests[-1] == RewriteRequest(text="Rewrite me, please, if you can.", style="shorter")
    assert result_view_text(pane) == "Short one."
    before_accept = pane.editor.toPlainText()
    assert before_accept == "Intro. " + original, "the document is not touched before Accept"

    button(pane, "resultAccept").click()
    assert pane.editor.toPlainText() == "Intro. Keep this. Short one. Keep that."
    assert not pane.result_panel.isVisible()
    pane.editor.undo()
    assert pane.editor.toPlainText() == before_accept, "Accept is one undo step"


def test_rewrite_discard_leaves_text_undo_and_modified_flag_alone(qtbot, pane: EditorPane, fake_session) -> None:
    pane.editor.setPlainText("Alpha beta gamma.")
    document = pane.editor.document()
    document.setModified(False)
    select(pane, "beta")
    run_until_idle(qtbot, pane, lambda: pane.rewrite_selection("formal"))
    assert pane.result_panel.isVisible() and button(pane, "resultAccept").isEnabled()

    button(pane, "resultDiscard").click()
    assert not pane.result_panel.isVisible()
    assert pane.editor.toPlainText() == "Alpha beta gamma."
    assert not document.isUndoAvailable() and not document.isRedoAvailable()
    assert not document.isModified()


def test_rewrite_dialog_custom_style_needs_an_instruction(qtbot, pane: EditorPane, fake_session) -> None:
    pane.editor.setPlainText("He walks home.")
    select(pane, "He walks home.")
    pane.rewrite_action.trigger()
    dialog = pane.findChild(QDialog, "rewriteDialog")
    assert dialog is not None and dialog.isVisible()
    style = dialog.findChild(QComboBox, "rewriteStyle")
    instruction = dialog.findChild(QLineEdit, "rewriteInstruction")
    box = dialog.findChild(QDialogButtonBox)
    assert style is not None and instruction is not None and box is not None
    assert [style.itemText(index) for index in range(style.count())][:4] == ["shorter", "longer", "formal", "vivid"]

    style.setCurrentText("custom")
    assert not box.button(QDialogButtonBox.StandardButton.Ok).isEnabled(), "custom asks for an instruction"
    qtbot.keyClicks(instruction, "in the past tense")
    run_until_idle(qtbot, pane, lambda: accept_dialog(dialog))
    assert fake_session.requests[-1] == RewriteRequest(
        text="He walks home.", style="custom", instruction="in the past tense"
    )


def test_rewrite_or_translate_without_a_selection_says_so(qtbot, pane: EditorPane, fake_session) -> None:
    pane.editor.setPlainText("Nothing selected here.")
    with qtbot.waitSignal(pane.statusMessage, timeout=WAIT_MS) as message:
        pane.rewrite_action.trigger()
    assert message.args[0] == "Select the text to rewrite first."
    with qtbot.waitSignal(pane.statusMessage, timeout=WAIT_MS) as message:
        pane.translate_action.trigger()
    assert message.args[0] == "Select the text to translate first."
    assert not pane.rewrite_dialog.isVisible() and not pane.translate_dialog.isVisible()
    assert fake_session.requests == []


def test_translate_sends_the_chosen_language_and_accept_replaces(qtbot, pane: EditorPane, fake_session) -> None:
    fake_session.words = ["Bonjour", " le monde."]
    pane.editor.setPlainText("Say: Hello world. Done.")
    select(pane, "Hello world. ")  # the trailing space survives the replacement
    pane.translate_action.trigger()
    dialog = pane.findChild(QDialog, "translateDialog")
    assert dialog is not None and dialog.isVisible()
    language = dialog.findChild(QComboBox, "translateLanguage")
    assert language is not None and language.isEditable() and language.findText("French") >= 0
    language.setCurrentText("French")
    run_until_idle(qtbot, pane, lambda: accept_dialog(dialog))

    assert fake_session.requests[-1] == TranslateRequest(text="Hello world. ", language="French")
    assert label(pane, "resultTitle").text() == "Translation into French"
    button(pane, "resultAccept").click()
    assert pane.editor.toPlainText() == "Say: Bonjour le monde. Done."


# --- one job at a time -----------------------------------------------------------------------------------------


def test_a_new_action_discards_the_running_one_so_its_text_never_lands(
    qtbot, fake_client, fake_session, app_settings
) -> None:
    fake_session.words = [f" s{index}" for index in range(300)]
    fake_session.delay = 0.01
    app_settings.sampler = SamplerSettings(max_new_tokens=300)
    pane = EditorPane(fake_client, app_settings)
    qtbot.addWidget(pane)
    pane.editor.setPlainText("Story.")
    put_cursor(pane, len("Story."))

    pane.continue_story()
    qtbot.waitUntil(lambda: " s2" in pane.editor.toPlainText(), timeout=WAIT_MS)
    busy_reports: list[bool] = []
    pane.busyChanged.connect(busy_reports.append)
    pane.summarize()  # replaces the continuation
    assert busy_reports == [] and pane.busy, "still busy: the pane does not flicker to idle in between"
    text_when_replaced = pane.editor.toPlainText()
    qtbot.waitUntil(lambda: "s5" in result_view_text(pane), timeout=WAIT_MS)
    run_until_idle(qtbot, pane, pane.stop)

    assert pane.editor.toPlainText() == text_when_replaced, "no stale continuation text landed"
    summary_request = fake_session.requests[-1]
    assert isinstance(summary_request, SummaryRequest) and summary_request.text == text_when_replaced
    assert result_view_text(pane).startswith(" s0 s1")

    select(pane, "Story.")
    pane.rewrite_selection("vivid")  # replaces a finished summary: the panel now shows only the rewrite
    assert result_view_text(pane) == ""
    qtbot.waitUntil(lambda: isinstance(fake_session.requests[-1], RewriteRequest), timeout=WAIT_MS)
    run_until_idle(qtbot, pane, pane.stop)
    assert isinstance(fake_session.requests[-1], RewriteRequest)
    pane.close()


def test_replacing_the_document_stops_a_running_continuation(qtbot, fake_client, fake_session, app_settings) -> None:
    fake_session.words = [f" s{index}" for index in range(300)]
    fake_session.delay = 0.01
    app_settings.sampler = SamplerSettings(max_new_tokens=300)
    pane = EditorPane(fake_client, app_settings)
    qtbot.addWidget(pane)
    pane.editor.setPlainText("Old story.")
    put_cursor(pane, len("Old story."))
    pane.continue_story()
    qtbot.waitUntil(lambda: " s2" in pane.editor.toPlainText(), timeout=WAIT_MS)

    pane.editor.setPlainText("A newly opened document.")  # what File > Open does
    assert not pane.busy
    assert "replaced" in label(pane, "assistStatus").text()
    fake_session.words = ["gist"]
    run_until_idle(qtbot, pane, pane.summarize)  # the worker is sequential: the old job is fully over now
    assert pane.editor.toPlainText() == "A newly opened document."
    pane.close()


# --- the real model, end to end --------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_model_continues_the_story_in_the_editor(qtbot, real_client, app_settings) -> None:
    pane = EditorPane(real_client, app_settings)
    qtbot.addWidget(pane)
    story = "The old lighthouse keeper climbed the stairs one last time, and"
    pane.editor.setPlainText(story)
    put_cursor(pane, len(story))
    pane.set_story_metadata({"memory": "A quiet story set on a stormy coast.", "authors_note": ""})

    run_until_idle(qtbot, pane, pane.continue_story, timeout=120_000)

    text = pane.editor.toPlainText()
    assert text.startswith(story)
    assert text[len(story) :].strip(), "the model added text at the cursor"
    pane.editor.undo()
    assert pane.editor.toPlainText() == story
    pane.close()


@pytest.mark.slow
def test_real_model_rewrite_is_applied_by_accept(qtbot, real_client, app_settings) -> None:
    pane = EditorPane(real_client, app_settings)
    qtbot.addWidget(pane)
    sentence = "the dog was very very big and it was running fast down the road."
    pane.editor.setPlainText(f"Before. {sentence} After.")
    select(pane, sentence)

    run_until_idle(qtbot, pane, lambda: pane.rewrite_selection("formal"), timeout=120_000)

    rewritten = pane.result_text.strip()
    assert rewritten, label(pane, "resultStatus").text()
    button(pane, "resultAccept").click()
    assert pane.editor.toPlainText() == f"Before. {rewritten} After."
    pane.close()
