"""The whole window as a user meets it: panes, shortcuts, status bar, settings, files and crash recovery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QElapsedTimer, Qt, QTimer
from PySide6.QtWidgets import QLabel, QPlainTextEdit, QTextBrowser

from assistant.core.prompts import StoryRequest
from assistant.core.settings import AppSettings, SamplerSettings, load_settings
from assistant.engine.session import ModelChoice
from tests.gui.test_documents import ScriptedPrompter


@pytest.fixture
def prompter() -> ScriptedPrompter:
    return ScriptedPrompter()


@pytest.fixture
def window(qtbot, fake_client, prompter, app_settings):
    from assistant.gui.main_window import MainWindow

    main = MainWindow(fake_client, app_settings, prompter_factory=lambda _parent: prompter)
    qtbot.addWidget(main)
    main.show()
    qtbot.waitExposed(main)
    yield main
    main._closing_confirmed = True
    main.close()


def test_panes_and_widgets_have_stable_names(window) -> None:
    for name, kind in [
        ("editorPane", None), ("chatPane", None), ("codePane", None), ("editor", QPlainTextEdit),
        ("chatInput", None), ("chatView", QTextBrowser), ("codeEditor", QPlainTextEdit), ("statusModel", QLabel),
    ]:  # fmt: skip
        widget = window.findChild(kind or object, name) if kind else window.findChild(object, name)
        assert widget is not None, f"no widget named {name}"


def test_ctrl_1_2_3_switch_panes(qtbot, window) -> None:
    for key, pane in (
        (Qt.Key.Key_2, window.chat_pane),
        (Qt.Key.Key_3, window.code_pane),
        (Qt.Key.Key_1, window.editor_pane),
    ):
        qtbot.keyClick(window, key, Qt.KeyboardModifier.ControlModifier)
        assert window.tabs.currentWidget() is pane


def test_every_menu_action_has_a_shortcut(window) -> None:
    missing = []
    for menu_action in window.menuBar().actions():
        menu = menu_action.menu()
        for action in menu.actions() if menu else []:
            if action.isSeparator() or action.menu() is not None or action.text().startswith("&About"):
                continue
            if action.shortcut().isEmpty():
                missing.append(f"{menu.title()} > {action.text()}")
    assert missing == []


def test_status_bar_shows_model_state_and_speed(qtbot, window, fake_client) -> None:
    assert "Fake model" in window.status_model.text() and "cpu" in window.status_model.text()
    assert window.status_state.text() == "Ready"
    window.editor_pane.editor.setPlainText("Once upon a time")
    job = fake_client.start(StoryRequest("x"), SamplerSettings())
    assert window.status_state.text() == "Writing…"
    with qtbot.waitSignal(job.finished, timeout=5000):
        pass
    assert window.status_state.text() == "Ready"
    assert window.status_speed.text().endswith("tokens/s")


def test_typing_works_while_the_model_loads(qtbot, prompter, app_settings) -> None:
    import threading

    from assistant.gui.main_window import MainWindow
    from assistant.gui.worker import AiClient
    from tests.gui.conftest import FakeSession

    release = threading.Event()

    def slow_factory(_choice, progress):
        progress("Loading a slow model", None)
        release.wait(10)
        return FakeSession()

    client = AiClient(slow_factory)
    main = MainWindow(client, app_settings, prompter_factory=lambda _parent: prompter)
    qtbot.addWidget(main)
    main.show()
    client.load(ModelChoice())
    try:
        qtbot.waitUntil(lambda: main.status_progress.isVisible(), timeout=5000)
        assert main.status_state.text() == "Loading model…"
        main.editor_pane.editor.setFocus()
        qtbot.keyClicks(main.editor_pane.editor, "Typing while it loads")
        assert main.editor_pane.editor.toPlainText() == "Typing while it loads"
        with qtbot.waitSignal(client.modelLoaded, timeout=10000):
            release.set()
        assert main.status_state.text() == "Ready" and not main.status_progress.isVisible()
    finally:
        release.set()
        main._closing_confirmed = True
        main.close()
        client.shutdown()


def test_settings_round_trip_and_model_reload(qtbot, window, fake_client, isolated_profile) -> None:
    new = AppSettings(model="/models/other.gguf", theme="dark", autosave_seconds=3, editor_font_size=15)
    new.sampler = SamplerSettings(temperature=0.2, max_new_tokens=99, seed=5)
    with qtbot.waitSignal(fake_client.modelLoaded, timeout=5000):
        window.change_settings(new)
    saved = load_settings()
    assert saved.model == "/models/other.gguf" and saved.theme == "dark" and saved.autosave_seconds == 3
    assert saved.sampler == new.sampler
    assert window.autosave_timer.interval() == 3000
    on_disk = json.loads((isolated_profile / "config" / "settings.json").read_text())
    assert on_disk["version"] == 1


def test_settings_dialog_reads_and_returns_every_field(qtbot) -> None:
    from assistant.gui.dialogs.settings import SettingsDialog

    original = AppSettings(model="org/model", device="cpu", dtype="bfloat16", theme="light", autosave_seconds=42)
    original.sampler = SamplerSettings(temperature=0.3, top_p=0.8, top_k=20, min_p=0.1, max_new_tokens=300, seed=9)
    dialog = SettingsDialog(original)
    qtbot.addWidget(dialog)
    assert dialog.model_kind.currentIndex() == 3
    result = dialog.result_settings()
    assert result.model == "org/model" and result.device == "cpu" and result.dtype == "bfloat16"
    assert result.sampler == original.sampler and result.theme == "light" and result.autosave_seconds == 42
    dialog.model_kind.setCurrentIndex(0)
    dialog.fixed_seed.setChecked(False)
    changed = dialog.result_settings()
    assert changed.model == "" and changed.sampler.seed is None


def test_failed_model_load_keeps_the_previous_model(qtbot, prompter, app_settings) -> None:
    from assistant.core.errors import ModelError
    from assistant.gui.main_window import MainWindow
    from assistant.gui.worker import AiClient
    from tests.gui.conftest import FakeSession

    def factory(choice, _progress):
        if choice.model:
            raise ModelError(f"Model not found: '{choice.model}' does not exist.")
        return FakeSession()

    client = AiClient(factory)
    main = MainWindow(client, app_settings, prompter_factory=lambda _parent: prompter)
    qtbot.addWidget(main)
    try:
        with qtbot.waitSignal(client.modelLoaded, timeout=5000):
            client.load(ModelChoice())
        broken = AppSettings(model="/nowhere/model.gguf")
        with qtbot.waitSignal(client.loadFailed, timeout=5000):
            main.change_settings(broken)
        assert "does not exist" in prompter.warnings[-1] and "previous model is still in use" in prompter.warnings[-1]
        assert main.status_state.text() == "Ready"
        assert "Fake model" in main.status_model.text()
    finally:
        main._closing_confirmed = True
        main.close()
        client.shutdown()


def test_open_routes_code_to_the_code_pane_and_remembers_recent(window, tmp_path: Path) -> None:
    script = tmp_path / "tool.py"
    script.write_text("print('hi')\n", encoding="utf-8")
    story = tmp_path / "story.md"
    story.write_text("# Chapter\n", encoding="utf-8")
    assert window.open_file(script)
    assert window.tabs.currentWidget() is window.code_pane
    assert window.code_pane.editor.toPlainText() == "print('hi')\n"
    assert window.open_file(story)
    assert window.tabs.currentWidget() is window.editor_pane
    assert window.settings.recent_files[:2] == [str(story.resolve()), str(script.resolve())]
    assert [action.text() for action in window.recent_menu.actions()][:2] == [
        str(story.resolve()),
        str(script.resolve()),
    ]
    assert window.windowTitle() == "story.md — Penwright"


def test_close_with_unsaved_changes_asks_and_can_cancel(qtbot, window, prompter) -> None:
    window.editor_pane.editor.setFocus()
    qtbot.keyClicks(window.editor_pane.editor, "unsaved")
    prompter.save_choice = "cancel"
    assert not window.close()
    assert window.isVisible() and "Save the changes" in prompter.questions[-1]
    prompter.save_choice = "discard"
    assert window.close()


def test_escape_stops_the_running_answer(qtbot, window, fake_session) -> None:
    fake_session.words = [f"w{index} " for index in range(3000)]
    fake_session.delay = 0.002
    window.tabs.setCurrentWidget(window.chat_pane)
    chat_input = window.findChild(QPlainTextEdit, "chatInput")
    chat_input.setFocus()
    qtbot.keyClicks(chat_input, "Tell me everything")
    qtbot.keyClick(chat_input, Qt.Key.Key_Return)
    chat_view = window.findChild(QTextBrowser, "chatView")
    qtbot.waitUntil(lambda: "w20" in chat_view.toPlainText(), timeout=5000)
    qtbot.keyClick(chat_input, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not window.client.busy, timeout=3000)
    assert "w2999" not in chat_view.toPlainText(), "the answer stopped long before its end"
    assert "w20" in chat_view.toPlainText(), "what was written so far stays"


def test_event_loop_never_stalls_while_the_real_model_streams(qtbot, real_client, prompter, app_settings) -> None:
    """A 5 ms timer probe measures the longest gap in the UI thread while 128 tokens stream into the editor."""
    from assistant.gui.main_window import MainWindow

    settings = AppSettings()
    settings.sampler = SamplerSettings(max_new_tokens=128, temperature=0.8, seed=3, repetition_penalty=1.0)
    main = MainWindow(real_client, settings, prompter_factory=lambda _parent: prompter)
    qtbot.addWidget(main)
    main.show()
    qtbot.waitExposed(main)
    editor = main.editor_pane.editor
    editor.setPlainText("The expedition reached the glacier at dawn. " * 40)
    editor.moveCursor(editor.textCursor().MoveOperation.End)
    gaps: list[int] = []
    clock = QElapsedTimer()
    clock.start()
    last = [clock.elapsed()]

    def probe() -> None:
        now = clock.elapsed()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(probe)
    timer.start()
    before = len(editor.toPlainText())
    continue_action = next(a for a in main.editor_pane.pane_actions() if "Continue" in a.text())
    continue_action.trigger()
    qtbot.waitUntil(lambda: real_client.busy, timeout=5000)
    qtbot.waitUntil(lambda: not real_client.busy, timeout=120000)
    timer.stop()
    longest = max(gaps[2:]) if len(gaps) > 2 else 0
    print(f"longest event-loop stall while streaming: {longest} ms over {len(gaps)} probes")
    assert len(editor.toPlainText()) > before, "the story grew"
    assert longest < 150, f"the event loop stalled for {longest} ms (goal 50 ms; margin for a loaded CI machine)"
    main._closing_confirmed = True
    main.close()


CRASHING_CHILD = r"""
import sys, time
from PySide6.QtWidgets import QApplication
from assistant.core.prompts import StoryRequest
from assistant.core.settings import AppSettings
from assistant.gui.main_window import MainWindow
from assistant.gui.worker import AiClient
from tests.gui.conftest import FakeSession

app = QApplication([])
settings = AppSettings(autosave_seconds=1)
client = AiClient(lambda _c, _p: FakeSession())
window = MainWindow(client, settings)
window.show()
window.editor_pane.editor.insertPlainText("Chapter 7. Nobody saved this sentence.")
window.code_pane.editor.insertPlainText("def unsaved():\n    return 42\n")
print("TYPED", flush=True)
app.exec()
"""


def test_crash_recovery_restores_text_after_sigkill(qtbot, isolated_profile, prompter, app_settings, fake_client):
    from assistant.gui.main_window import MainWindow

    env = dict(os.environ, PENWRIGHT_PROFILE=str(isolated_profile), PYTHONPATH=str(Path(__file__).parents[2]))
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_CHILD], stdout=subprocess.PIPE, env=env, cwd=Path(__file__).parents[2]
    )
    assert child.stdout is not None and child.stdout.readline().strip() == b"TYPED"
    recovery = isolated_profile / "data" / "recovery"
    # The child's autosave timer runs every second.
    qtbot.waitUntil(lambda: len(list(recovery.glob("*.json"))) >= 2, timeout=20000)
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    assert len(list(recovery.glob("*.json"))) == 2, "both documents were autosaved before the crash"

    prompter.confirm_answer = True
    restarted = MainWindow(fake_client, app_settings, prompter_factory=lambda _parent: prompter)
    qtbot.addWidget(restarted)
    assert restarted.offer_recovery() == 2
    assert "did not close properly" in prompter.questions[-1]
    assert restarted.editor_pane.editor.toPlainText() == "Chapter 7. Nobody saved this sentence."
    assert restarted.code_pane.editor.toPlainText() == "def unsaved():\n    return 42\n"
    assert restarted.editor_doc.modified, "restored text still needs saving"
    prompter.save_choice = "discard"
    restarted.close()
    assert list(recovery.glob("*.json")) == [], "a clean close leaves no recovery files"


@pytest.mark.slow  # a child process loads the real model
def test_screenshot_command_saves_the_window(cli_env, tmp_path: Path, session_profile: Path) -> None:
    shot = tmp_path / "shot.png"
    result = subprocess.run(
        [sys.executable, "-m", "assistant", "gui", "--screenshot", str(shot), "--profile", str(session_profile)],
        capture_output=True, env=dict(cli_env, QT_QPA_PLATFORM="offscreen"), timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    from PySide6.QtGui import QImage

    image = QImage(str(shot))
    assert image.width() >= 800 and image.height() >= 500


def test_switching_panes_puts_the_cursor_where_the_user_types(qtbot, window) -> None:
    window.activateWindow()
    qtbot.keyClick(window, Qt.Key.Key_2, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.focusWidget() is window.findChild(QPlainTextEdit, "chatInput"), timeout=2000)
    qtbot.keyClick(window, Qt.Key.Key_3, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.focusWidget() is window.code_pane.editor, timeout=2000)
    qtbot.keyClick(window, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.focusWidget() is window.editor_pane.editor, timeout=2000)


def test_dark_and_light_themes_change_the_whole_window(qtbot, window) -> None:
    from PySide6.QtGui import QPalette
    from PySide6.QtWidgets import QApplication

    dark = AppSettings(theme="dark")
    window.change_settings(dark)
    base = QApplication.palette().color(QPalette.ColorRole.Base)
    assert base.lightness() < 80, "dark theme: dark text areas"
    editor = window.editor_pane.editor
    qtbot.waitUntil(lambda: editor.palette().color(QPalette.ColorRole.Base).lightness() < 80, timeout=2000)
    window.change_settings(AppSettings(theme="light"))
    assert QApplication.palette().color(QPalette.ColorRole.Base).lightness() > 200
