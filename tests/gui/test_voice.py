"""Learn my voice in the app: the dialog (texts, words counted, bad input said), training in the worker thread with a
live chart and Stop, the result (perplexity before and after, the two continuations), using a voice (Settings, the
status bar, no reload), the model being busy meanwhile, and one run on the real bundled model."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QComboBox, QLabel, QPushButton

from assistant.core.errors import ModelError
from assistant.core.prompts import StoryRequest
from assistant.core.settings import AppSettings, SamplerSettings, load_settings
from assistant.engine.remote import RemoteModelInfo
from assistant.engine.session import ModelChoice
from assistant.gui.worker import LEARNING_MESSAGE, AiClient
from tests.engine.test_voices import marsh_text
from tests.gui.conftest import FakeSession
from tests.gui.test_documents import ScriptedPrompter

WORDS = marsh_text()  # about 3,500 words


def make_dialog(qtbot, client: AiClient, documents=None):
    from assistant.gui.voice_dialog import VoiceDialog

    dialog = VoiceDialog(client, documents or (lambda: []))
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def counted(qtbot, dialog) -> str:
    """Wait for the words to be counted (on their thread); the count line's text."""
    dialog.count_now()
    qtbot.waitUntil(lambda: not dialog._counting, timeout=10000)
    return dialog.count_label.text()


def save_fake_voice(name: str, words: int = 3500) -> Path:
    """A voice folder as the engine saves it (the adapter's bytes do not matter to the app)."""
    from assistant.engine.voices import voice_folder

    folder = voice_folder(name)
    folder.mkdir(parents=True)
    for file in ("adapter_model.safetensors", "adapter_config.json"):
        (folder / file).write_bytes(b"{}")
    report = {"name": name, "words": words, "perplexity_before": 30.0, "perplexity_after": 21.0, "base": {}}
    (folder / "report.json").write_text(json.dumps(report), encoding="utf-8")
    return folder


@pytest.fixture
def window(qtbot, fake_client, app_settings):
    from assistant.gui.main_window import MainWindow

    main = MainWindow(fake_client, app_settings, prompter_factory=lambda _parent: ScriptedPrompter())
    qtbot.addWidget(main)
    main.show()
    yield main
    main._closing_confirmed = True
    main.close()


@pytest.fixture
def counting_window(qtbot, app_settings):
    """A main window whose fake model counts its loads (a voice must switch without one)."""
    from assistant.gui.main_window import MainWindow

    session = FakeSession()
    choices: list[ModelChoice] = []

    def factory(choice: ModelChoice, _progress) -> FakeSession:
        choices.append(choice)
        if choice.voice:
            session.set_voice(choice.voice)  # ModelError for a missing voice, as load_model raises
        return session

    client = AiClient(factory)
    main = MainWindow(client, app_settings, prompter_factory=lambda _parent: ScriptedPrompter())
    qtbot.addWidget(main)
    with qtbot.waitSignal(client.modelLoaded, timeout=5000):
        client.load(main.model_choice())
    yield main, client, session, choices
    main._closing_confirmed = True
    main.close()
    client.shutdown()
    assert not client._thread.isRunning()


# --- choosing the texts -----------------------------------------------------------------------------------------


def test_the_open_document_is_counted_with_its_unsaved_edits_and_start_needs_a_name(qtbot, fake_client) -> None:
    text = {"now": WORDS}
    dialog = make_dialog(qtbot, fake_client, lambda: [("chapter.md", text["now"])])
    assert "3," in counted(qtbot, dialog) and "words in 1 text" in dialog.count_label.text()
    assert not dialog.start_button.isEnabled(), "no name yet"
    dialog.name_input.setText("marsh")
    assert dialog.start_button.isEnabled()
    text["now"] = "Only a few words now."  # the writer cut the chapter, unsaved
    assert "holds 5 words; a voice needs at least 2,000 words" in counted(qtbot, dialog)
    assert not dialog.start_button.isEnabled()
    dialog.set_document_ticked(0, False)
    assert counted(qtbot, dialog).startswith("Choose your texts")
    assert not dialog.start_button.isEnabled()


def test_editing_the_ticked_document_counts_again(qtbot, window) -> None:
    window.editor_pane.editor.setPlainText(WORDS)
    dialog = window.open_voice_dialog()
    dialog.name_input.setText("marsh")
    qtbot.waitUntil(lambda: dialog.start_button.isEnabled(), timeout=5000)
    window.editor_pane.editor.setPlainText("Cut to the bone.")
    assert not dialog.start_button.isEnabled(), "counting again"
    qtbot.waitUntil(lambda: "holds 4 words" in dialog.count_label.text(), timeout=5000)
    assert not dialog.start_button.isEnabled()


def test_files_and_folders_are_counted_and_bad_files_are_said(qtbot, fake_client, tmp_path: Path) -> None:
    dialog = make_dialog(qtbot, fake_client)
    dialog.name_input.setText("marsh")
    short = tmp_path / "short.txt"
    short.write_text("A single short paragraph of prose.", encoding="utf-8")
    dialog.add_paths([short])
    assert "'short.txt' holds 6 words; a voice needs at least 2,000 words" in counted(qtbot, dialog)
    assert not dialog.start_button.isEnabled()
    assert "color" in dialog.count_label.styleSheet(), "a refusal is shown as such"

    picture = tmp_path / "cover.txt"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    dialog.add_paths([picture])
    assert counted(qtbot, dialog) == f"'{picture}' is a binary file, not text."
    assert not dialog.start_button.isEnabled()

    dialog.sources.clearSelection()
    for row in range(dialog.sources.count()):
        dialog.sources.item(row).setSelected(True)
    dialog._remove_selected()
    folder = tmp_path / "chapters"
    folder.mkdir()
    (folder / "one.md").write_text(WORDS[: len(WORDS) // 2], encoding="utf-8")
    (folder / "two.txt").write_text(WORDS[len(WORDS) // 2 :], encoding="utf-8")
    dialog.add_paths([folder])
    assert "words in 2 texts" in counted(qtbot, dialog)
    assert dialog.start_button.isEnabled()

    empty = tmp_path / "empty"
    empty.mkdir()
    dialog.add_paths([empty])
    assert "holds no .txt or .md files" in counted(qtbot, dialog)
    assert not dialog.start_button.isEnabled()


def test_a_bad_or_taken_name_is_said_and_taken_needs_replace(qtbot, fake_client) -> None:
    dialog = make_dialog(qtbot, fake_client, lambda: [("chapter.md", WORDS)])
    counted(qtbot, dialog)
    dialog.name_input.setText("../escape")
    assert "A voice name is 1-64 letters" in dialog.name_note.text()
    assert not dialog.start_button.isEnabled()
    save_fake_voice("marsh")
    dialog.name_input.setText("marsh")
    assert "exists already" in dialog.name_note.text()
    assert dialog.replace_box.isVisibleTo(dialog) and not dialog.start_button.isEnabled()
    dialog.replace_box.setChecked(True)
    assert dialog.start_button.isEnabled() and dialog.name_note.text() == ""


def test_a_remote_model_cannot_learn_a_voice(qtbot, fake_client) -> None:
    fake_client.model_info = RemoteModelInfo("big", "remote", "", 8192, 0.1, host="gpu-box", base_url="http://x/v1")
    dialog = make_dialog(qtbot, fake_client, lambda: [("chapter.md", WORDS)])
    counted(qtbot, dialog)
    dialog.name_input.setText("marsh")
    assert "the model runs on a server now" in dialog.message.text()
    assert not dialog.start_button.isEnabled()


# --- training ---------------------------------------------------------------------------------------------------


def start_training(qtbot, dialog, name: str = "marsh"):
    dialog.name_input.setText(name)
    counted(qtbot, dialog)
    assert dialog.start_button.isEnabled(), dialog.count_label.text() + dialog.name_note.text()
    dialog.minutes.setValue(3)
    dialog.start_button.click()
    assert dialog.training is not None
    return dialog.training


def test_training_runs_in_the_worker_and_fills_the_chart_then_shows_the_result(
    qtbot, fake_client, fake_session
) -> None:
    dialog = make_dialog(qtbot, fake_client, lambda: [("chapter.md", WORDS)])
    batches: list[int] = []
    training = start_training(qtbot, dialog)
    training.progressed.connect(lambda steps: batches.append(len(steps)))
    assert dialog.pages.currentIndex() == 1 and fake_client.state == "learning"
    with qtbot.waitSignal(training.finished, timeout=10000) as finished:
        pass
    report = finished.args[0]
    name, options, replaced = fake_session.learnt[-1]
    assert name == "marsh" and options.minutes == 3.0 and not replaced
    assert threading.main_thread().ident not in fake_session.threads
    assert len(batches) < fake_session.train_steps, "progress arrives in batches, not one signal per step"
    assert [step for step, _ in dialog.chart.losses] == list(range(1, 21))
    assert dialog.chart.perplexities[0] == (0, 30.0) and len(dialog.chart.perplexities) == 5
    dialog.chart.grab()  # paints with data
    assert dialog.pages.currentIndex() == 2 and fake_client.state == "ready"
    summary = dialog.summary_label.text()
    assert "30.0 → 18.0 (40% lower)" in summary and "0.5 minutes" in summary and "Stopped" not in summary
    assert report.perplexity_after == 18.0
    assert dialog.prompt_view.toPlainText() == "Verily, the heron"
    assert dialog.without_view.toPlainText() == " flew over the lake."
    assert dialog.with_view.toPlainText() == " saith unto the marsh."


def test_stop_keeps_the_best_voice_so_far(qtbot, fake_client, fake_session) -> None:
    fake_session.pause_after = 6
    dialog = make_dialog(qtbot, fake_client, lambda: [("chapter.md", WORDS)])
    training = start_training(qtbot, dialog)
    qtbot.waitUntil(lambda: len(dialog.chart.losses) == 6, timeout=5000)
    assert "step 6 of about 20" in dialog.stage_label.text()
    assert "Held-out perplexity: 30.0 at the start, 27.0 at the last check, best 27.0" in dialog.stats_label.text()
    assert "250 tokens/s" in dialog.stats_label.text() and "Time left" in dialog.stats_label.text()
    with qtbot.waitSignal(training.finished, timeout=5000):
        dialog.stop_button.click()  # the UI thread sets the token: the worker sees it at its next step
    assert "Stopped early: the best voice so far was kept." in dialog.summary_label.text()
    assert "30.0 → 27.0" in dialog.summary_label.text()


def test_stop_before_the_first_step_saves_nothing_and_says_so(qtbot, fake_client, fake_session) -> None:
    from assistant.engine.voices import voice_folder

    fake_session.train_delay = 0.05
    dialog = make_dialog(qtbot, fake_client, lambda: [("chapter.md", WORDS)])
    training = start_training(qtbot, dialog)
    with qtbot.waitSignal(training.failed, timeout=5000) as failed:
        dialog.stop()
    assert failed.args[0] == "Learning the voice was stopped before it began; nothing was saved."
    assert dialog.pages.currentIndex() == 0 and dialog.message.text() == failed.args[0]
    assert not voice_folder("marsh").exists()
    assert dialog.start_button.isEnabled(), "the writer can start again"


def test_while_learning_writing_is_refused_with_a_sentence_and_suggestions_do_not_pile_up(
    qtbot, window, fake_client, fake_session
) -> None:
    fake_session.pause_after = 2
    window.editor_pane.editor.setPlainText(WORDS)
    dialog = window.open_voice_dialog()
    training = start_training(qtbot, dialog)
    qtbot.waitUntil(lambda: len(dialog.chart.losses) == 2, timeout=5000)
    assert window.status_state.text() == "Learning your voice…"
    asked = len(fake_session.requests)
    window.editor_pane.editor.moveCursor(QTextCursor.MoveOperation.End)
    window.editor_pane.continue_story()
    qtbot.waitUntil(lambda: window.statusBar().currentMessage() == LEARNING_MESSAGE, timeout=5000)
    assert not window.editor_pane.busy
    assert window.editor_pane.editor.toPlainText() == WORDS, "nothing was written"
    suggestions = [fake_client.suggest(object()) for _ in range(5)]
    qtbot.waitUntil(lambda: all(job.done or job.id not in fake_client._jobs for job in suggestions), timeout=5000)
    assert len(fake_session.requests) == asked, "no request reached the model while it learnt"
    window.editor_pane.editor.setFocus()
    assert window.editor_pane.ghost._why_not(manual=True) == LEARNING_MESSAGE
    with qtbot.waitSignal(training.finished, timeout=5000):
        fake_session.resume.set()
    assert window.status_state.text() == "Ready"
    job = fake_client.start(StoryRequest("Once"), SamplerSettings(max_new_tokens=3))
    with qtbot.waitSignal(job.finished, timeout=5000):
        pass
    assert job.text == "word0 word1 word2 "


def test_closing_the_dialog_lets_learning_go_on_and_the_status_bar_says_when_it_ends(
    qtbot, window, fake_client, fake_session
) -> None:
    window.editor_pane.editor.setPlainText(WORDS)
    dialog = window.open_voice_dialog()
    training = start_training(qtbot, dialog)
    dialog.close()
    with qtbot.waitSignal(training.finished, timeout=10000):
        pass
    assert (
        window.statusBar().currentMessage()
    ) == "The voice 'marsh' is learnt: held-out perplexity 30.0 → 18.0 (40% lower)."
    assert window.open_voice_dialog().pages.currentIndex() == 2, "the result waits in the dialog"


def test_quitting_while_learning_asks_and_keeps_the_best_voice_so_far(qtbot, window, fake_client, fake_session) -> None:
    fake_session.pause_after = 3
    window.editor_pane.editor.setPlainText(WORDS)
    window.editor_pane.editor.document().setModified(False)  # nothing to save: only the voice is asked about
    dialog = window.open_voice_dialog()
    training = start_training(qtbot, dialog)
    qtbot.waitUntil(lambda: len(dialog.chart.losses) == 3, timeout=5000)
    window.prompter.confirm_answer = False
    assert not window.close(), "the writer chose to stay"
    assert "Quit now? Learning stops at its next step" in window.prompter.questions[-1]
    assert not training.cancel_token.cancelled
    window.prompter.confirm_answer = True
    with qtbot.waitSignal(training.finished, timeout=5000) as finished:
        assert window.close()
    assert finished.args[0].stopped and finished.args[0].steps == 3


# --- using a voice ------------------------------------------------------------------------------------------------


def test_use_this_voice_switches_without_a_reload_and_the_status_bar_shows_it(qtbot, counting_window) -> None:
    window, client, session, choices = counting_window
    window.editor_pane.editor.setPlainText(WORDS)
    dialog = window.open_voice_dialog()
    training = start_training(qtbot, dialog)
    with qtbot.waitSignal(training.finished, timeout=10000):
        pass
    with qtbot.waitSignal(client.voiceChanged, timeout=5000):
        dialog.use_button.click()
    assert session.voice_calls == ["marsh"] and len(choices) == 1, "switched, not reloaded"
    assert window.status_model.text() == "Fake model · cpu · float32 · voice: marsh"
    assert window.statusBar().currentMessage() == "Writing in the voice 'marsh' now."
    assert dialog.use_button.text() == "In use" and not dialog.use_button.isEnabled()
    assert load_settings().voice == "marsh" and window.model_choice().voice == "marsh"


def test_learning_the_voice_in_use_again_puts_the_new_one_in_use(qtbot, counting_window) -> None:
    window, client, session, _choices = counting_window
    save_fake_voice("marsh")
    with qtbot.waitSignal(client.voiceChanged, timeout=5000):
        window.use_voice("marsh")
    window.editor_pane.editor.setPlainText(WORDS)
    dialog = window.open_voice_dialog()
    dialog.name_input.setText("marsh")
    dialog.replace_box.setChecked(True)
    with qtbot.waitSignal(client.voiceChanged, timeout=10000) as changed:
        training = start_training(qtbot, dialog)
    assert training.report is not None and session.learnt[-1][2] is True, "learnt with replace"
    assert session.voice_calls == ["marsh", "", "marsh"] and changed.args[0].voice == "marsh"


def test_settings_list_the_voices_and_changing_the_voice_calls_set_voice_without_a_reload(
    qtbot, counting_window
) -> None:
    from assistant.gui.dialogs.settings import SettingsDialog

    window, client, session, choices = counting_window
    save_fake_voice("marsh")
    save_fake_voice("heron", words=2500)
    dialog = SettingsDialog(window.settings)
    qtbot.addWidget(dialog)
    combo = dialog.findChild(QComboBox, "settingsVoice")
    assert [combo.itemData(index) for index in range(combo.count())] == ["", "heron", "marsh"]
    assert combo.itemData(2, 3) == "marsh: 3,500 words, perplexity 30.0 -> 21.0, on unknown model"  # ToolTipRole
    assert combo.isEnabled()
    combo.setCurrentIndex(combo.findData("heron"))
    with qtbot.waitSignal(client.voiceChanged, timeout=5000):
        window.change_settings(dialog.result_settings())
    assert session.voice_calls == ["heron"] and len(choices) == 1
    assert window.status_model.text().endswith("· voice: heron")
    with qtbot.waitSignal(client.voiceChanged, timeout=5000):
        window.change_settings(replace(window.settings, voice=""))
    assert session.voice_calls == ["heron", ""] and len(choices) == 1
    assert "voice" not in window.status_model.text()
    assert window.statusBar().currentMessage() == "Writing without a voice now."
    changed = replace(window.settings, voice="marsh", quantize="int8")  # a new model loads with the voice
    with qtbot.waitSignal(client.modelLoaded, timeout=5000):
        window.change_settings(changed)
    assert choices[-1] == ModelChoice(quantize="int8", voice="marsh")


def test_a_voice_that_cannot_be_used_is_said_and_the_previous_one_stays(qtbot, counting_window) -> None:
    window, client, session, _choices = counting_window
    save_fake_voice("marsh")
    with qtbot.waitSignal(client.voiceChanged, timeout=5000):
        client.set_voice("marsh")
    with qtbot.waitSignal(client.voiceFailed, timeout=5000) as failed:
        window.change_settings(replace(window.settings, voice="fog"))
    assert failed.args[0].startswith("There is no voice named 'fog'")
    assert window.statusBar().currentMessage() == failed.args[0]
    assert session.voice == "marsh" and client.model_info.voice == "marsh"
    assert window.status_model.text().endswith("· voice: marsh")


def test_a_missing_voice_at_start_writes_without_it_and_says_why(qtbot, app_settings) -> None:
    from assistant.gui.main_window import MainWindow

    session = FakeSession()
    choices: list[ModelChoice] = []

    def factory(choice: ModelChoice, _progress) -> FakeSession:
        choices.append(choice)
        if choice.voice:
            raise ModelError(f"There is no voice named '{choice.voice}'; learn one with 'penwright tune'.")
        return session

    settings = replace(app_settings, voice="gone")
    client = AiClient(factory)
    window = MainWindow(client, settings, prompter_factory=lambda _parent: ScriptedPrompter())
    qtbot.addWidget(window)
    try:
        with qtbot.waitSignal(client.modelLoaded, timeout=5000):
            client.load(window.model_choice())
        assert [choice.voice for choice in choices] == ["gone", ""]
        assert window.status_model.text() == "Fake model · cpu · float32"
        assert window.statusBar().currentMessage() == (
            "Model ready (0.0 s). There is no voice named 'gone'; learn one with 'penwright tune'. "
            "The model writes without a voice for now."
        )
        assert window.settings.voice == "gone", "kept: the voice may come back (another model chosen again)"
        job = client.start(StoryRequest("Once"), SamplerSettings(max_new_tokens=2))
        with qtbot.waitSignal(job.finished, timeout=5000):
            pass
        assert job.text
    finally:
        window._closing_confirmed = True
        window.close()
        client.shutdown()


def test_the_voice_setting_is_off_for_a_remote_server_with_a_reason(qtbot) -> None:
    from assistant.gui.dialogs.settings import SettingsDialog

    save_fake_voice("marsh")
    settings = AppSettings(backend="remote", remote_base_url="", voice="marsh")
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    combo = dialog.findChild(QComboBox, "settingsVoice")
    note = dialog.findChild(QLabel, "settingsVoiceNote")
    assert not combo.isEnabled() and "a model on a server has none" in note.text()
    assert dialog.result_settings().voice == "marsh", "kept for when the model runs here again"
    dialog.backend.setCurrentIndex(dialog.backend.findData("local"))
    assert combo.isEnabled() and note.text() == ""


def test_learn_my_voice_is_in_the_assist_menu_with_a_shortcut(qtbot, window) -> None:
    menu = next(menu for menu in window.pane_menus if menu.title() == "&Assist")
    action = next(action for action in menu.actions() if "voice" in action.text())
    assert action.shortcut().toString() == "Ctrl+Shift+L"
    action.trigger()
    dialog = window.voice_dialog
    assert dialog is not None and dialog.isVisible() and not dialog.isModal()
    assert dialog.findChild(QPushButton, "voiceStart") is dialog.start_button


# --- the real model ---------------------------------------------------------------------------------------------


def test_a_tiny_voice_learnt_through_the_dialog_on_the_real_model_is_then_used(
    qtbot, real_client, isolated_profile: Path, session_profile: Path, app_settings
) -> None:
    """Two training steps on the bundled model, through the dialog, then the window writes in the voice."""
    from assistant.engine.voices import TrainingOptions, voice_folder
    from assistant.gui.main_window import MainWindow

    # The session's conversion cache, so the full-precision copy is not converted from the GGUF again.
    shared_cache = session_profile / "cache"
    shared_cache.mkdir(parents=True, exist_ok=True)
    isolated_profile.mkdir(parents=True, exist_ok=True)
    (isolated_profile / "cache").symlink_to(shared_cache)

    window = MainWindow(real_client, app_settings, prompter_factory=lambda _parent: ScriptedPrompter())
    qtbot.addWidget(window)
    try:
        window.editor_pane.editor.setPlainText(WORDS)
        dialog = window.open_voice_dialog()
        dialog.base_options = TrainingOptions(
            max_steps=2, window_tokens=128, evaluations=1, max_eval_windows=2, sample_tokens=8, warmup_steps=1
        )
        training = start_training(qtbot, dialog, "tiny marsh")
        with qtbot.waitSignal(training.finished, timeout=180000) as finished:
            pass
        report = finished.args[0]
        assert report.steps == 2 and report.perplexity_before > 0 and report.perplexity_after > 0
        assert [step for step, _ in dialog.chart.losses] == [1, 2]
        assert "Held-out perplexity" in dialog.summary_label.text()
        assert dialog.prompt_view.toPlainText() and dialog.with_view.toPlainText()
        assert (voice_folder("tiny marsh") / "adapter_model.safetensors").is_file()
        assert real_client.model_info.voice == ""

        with qtbot.waitSignal(real_client.voiceChanged, timeout=60000):
            dialog.use_button.click()
        assert real_client.model_info.voice == "tiny marsh"
        assert window.status_model.text().endswith("· voice: tiny marsh")
        job = real_client.start(StoryRequest("Verily, the heron"), SamplerSettings(max_new_tokens=6, seed=1))
        with qtbot.waitSignal(job.finished, timeout=60000) as done:
            pass
        assert done.args[0]["new_tokens"] > 0 and job.text
    finally:
        if real_client.model_info is not None and real_client.model_info.voice:
            with qtbot.waitSignal(real_client.voiceChanged, timeout=60000):
                real_client.set_voice("")  # the session's shared engine goes back as it was for the next tests
        window._closing_confirmed = True
        window.close()
