"""The chat pane as a user meets it: type, press Enter, watch the answer stream in, stop, redo, switch, export."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt, QUrl
from PySide6.QtGui import QDesktopServices, QFont, QGuiApplication, QTextCursor, QTextFormat
from PySide6.QtNetwork import QHostAddress, QTcpServer
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QPushButton,
    QTextBrowser,
)

from assistant.core.errors import ModelError
from assistant.core.history import ChatHistory, default_history_path
from assistant.core.prompts import ChatRequest, CodeRequest, default_system_prompt
from assistant.core.settings import AppSettings, SamplerSettings
from assistant.gui.panes.chat import ChatPane

PaneFactory = Callable[..., ChatPane]
ANSWER_TIMEOUT_MS = 10000


@pytest.fixture
def chat_history() -> Iterator[ChatHistory]:
    history = ChatHistory()
    yield history
    history.close()


@pytest.fixture
def make_pane(qtbot, fake_client, app_settings: AppSettings, chat_history: ChatHistory) -> Iterator[PaneFactory]:
    """Shown chat panes on the fake model; all closed (their jobs dropped) before the client shuts down."""
    panes: list[ChatPane] = []

    def make(history: ChatHistory | None = None, settings: AppSettings | None = None) -> ChatPane:
        pane = ChatPane(fake_client, settings or app_settings, history or chat_history)
        qtbot.addWidget(pane)
        pane.resize(900, 600)
        pane.show()
        panes.append(pane)
        return pane

    yield make
    for pane in panes:
        pane.close()


def view_of(pane: ChatPane) -> QTextBrowser:
    view = pane.findChild(QTextBrowser, "chatView")
    assert view is not None
    return view


def input_of(pane: ChatPane) -> QPlainTextEdit:
    box = pane.findChild(QPlainTextEdit, "chatInput")
    assert box is not None
    return box


def button(pane: ChatPane, name: str) -> QPushButton:
    found = pane.findChild(QPushButton, name)
    assert found is not None
    return found


def shown_text(pane: ChatPane) -> str:
    return view_of(pane).toPlainText()


def type_and_press_enter(qtbot, pane: ChatPane, text: str) -> None:
    qtbot.keyClicks(input_of(pane), text)
    qtbot.keyClick(input_of(pane), Qt.Key.Key_Return)


def send_and_wait(qtbot, pane: ChatPane, text: str) -> str:
    with qtbot.waitSignal(pane.answerFinished, timeout=ANSWER_TIMEOUT_MS) as finished:
        type_and_press_enter(qtbot, pane, text)
    return str(finished.args[0])


def slow_words(prefix: str, count: int = 2000) -> list[str]:
    return [f"{prefix}{index} " for index in range(count)]


def long_answers(settings: AppSettings) -> None:
    settings.sampler = SamplerSettings(max_new_tokens=2000, seed=1)


# --- sending and streaming -------------------------------------------------------------------------------------


def test_enter_sends_and_the_answer_streams_in_live(qtbot, make_pane, fake_session, chat_history) -> None:
    fake_session.words = slow_words("word", 24)
    fake_session.delay = 0.02
    pane = make_pane()
    with qtbot.waitSignal(pane.answerFinished, timeout=ANSWER_TIMEOUT_MS) as finished:
        type_and_press_enter(qtbot, pane, "Hello there")
        assert input_of(pane).toPlainText() == "", "the box empties when the message is sent"
        qtbot.waitUntil(lambda: "word2" in shown_text(pane), timeout=ANSWER_TIMEOUT_MS)
        assert "word23" not in shown_text(pane), "text shows while the answer is still being written"
        assert pane.busy and not button(pane, "chatSend").isEnabled() and button(pane, "chatStop").isEnabled()
    assert finished.args[0] == "".join(fake_session.words).strip()
    assert "Hello there" in shown_text(pane) and "word23" in shown_text(pane)
    assert not pane.busy and not button(pane, "chatStop").isEnabled()
    request = fake_session.requests[0]
    assert isinstance(request, ChatRequest)
    assert list(request.history) == [{"role": "user", "content": "Hello there"}]
    assert request.system_prompt == default_system_prompt()
    saved = chat_history.load(pane.conversation_id)
    assert [message["role"] for message in saved.messages] == ["user", "assistant"]
    assert saved.messages[1]["content"].startswith("word0 word1")


def test_shift_enter_starts_a_new_line_instead_of_sending(qtbot, make_pane, fake_session) -> None:
    pane = make_pane()
    box = input_of(pane)
    qtbot.keyClicks(box, "line one")
    qtbot.keyClick(box, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(box, "line two")
    assert box.toPlainText() == "line one\nline two"
    assert not pane.busy and fake_session.requests == []
    answer = send_and_wait(qtbot, pane, "")  # Enter now sends both lines
    assert answer
    assert fake_session.requests[0].history[-1]["content"] == "line one\nline two"


def test_an_empty_message_is_not_sent(qtbot, make_pane, fake_session) -> None:
    pane = make_pane()
    qtbot.keyClicks(input_of(pane), "   ")
    qtbot.keyClick(input_of(pane), Qt.Key.Key_Return)
    assert not pane.busy and fake_session.requests == [] and pane.conversation_id is None


def test_the_next_message_carries_the_whole_conversation(qtbot, make_pane, fake_session) -> None:
    pane = make_pane()
    first_answer = send_and_wait(qtbot, pane, "First question")
    send_and_wait(qtbot, pane, "Second question")
    assert list(fake_session.requests[1].history) == [
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": first_answer},
        {"role": "user", "content": "Second question"},
    ]


def test_stop_keeps_the_partial_answer(qtbot, make_pane, fake_session, app_settings, chat_history) -> None:
    long_answers(app_settings)
    fake_session.words = slow_words("w")
    pane = make_pane()
    statuses: list[str] = []
    pane.statusMessage.connect(statuses.append)
    type_and_press_enter(qtbot, pane, "Tell me everything")
    qtbot.waitUntil(lambda: "w3 " in shown_text(pane), timeout=ANSWER_TIMEOUT_MS)
    with qtbot.waitSignal(pane.answerFinished, timeout=ANSWER_TIMEOUT_MS) as finished:
        qtbot.mouseClick(button(pane, "chatStop"), Qt.MouseButton.LeftButton)
    kept = finished.args[0]
    assert kept.startswith("w0 w1 w2 w3") and len(kept.split()) < 2000
    assert kept.split()[-1] in shown_text(pane)
    assert chat_history.load(pane.conversation_id).messages[-1] == {"role": "assistant", "content": kept}
    assert any("Stopped" in status for status in statuses)


def test_enter_while_answering_keeps_the_new_message(qtbot, make_pane, fake_session, app_settings) -> None:
    long_answers(app_settings)
    fake_session.words = slow_words("w")
    pane = make_pane()
    statuses: list[str] = []
    pane.statusMessage.connect(statuses.append)
    type_and_press_enter(qtbot, pane, "First")
    qtbot.waitUntil(lambda: "w1 " in shown_text(pane), timeout=ANSWER_TIMEOUT_MS)
    type_and_press_enter(qtbot, pane, "Too soon")
    assert input_of(pane).toPlainText() == "Too soon", "nothing typed is lost"
    assert "Stop" in statuses[-1] and len(fake_session.requests) == 1
    with qtbot.waitSignal(pane.answerFinished, timeout=ANSWER_TIMEOUT_MS):
        pane.stop()


def test_reading_back_while_an_answer_streams_is_not_interrupted(
    qtbot, make_pane, fake_session, app_settings, chat_history
) -> None:
    long_chat = chat_history.create_conversation()
    for index in range(100):
        chat_history.append_message(long_chat, "user", f"Question {index}\n\n" + "Some context. " * 20)
        chat_history.append_message(long_chat, "assistant", f"**Answer {index}**\n\n- point\n- point\n")
    long_answers(app_settings)
    fake_session.words = slow_words("w")
    pane = make_pane()
    pane.load_conversation(long_chat)
    bar = view_of(pane).verticalScrollBar()
    assert bar.maximum() > 0 and bar.value() == bar.maximum(), "a conversation opens at its newest message"
    type_and_press_enter(qtbot, pane, "One more")
    qtbot.waitUntil(lambda: "w3 " in shown_text(pane), timeout=ANSWER_TIMEOUT_MS)
    assert bar.value() == bar.maximum(), "the view follows the answer"
    bar.setValue(0)  # the user scrolls up to reread
    qtbot.waitUntil(lambda: "w30 " in shown_text(pane), timeout=ANSWER_TIMEOUT_MS)
    assert bar.value() == 0, "the view does not jump while the user reads"
    bar.setValue(bar.maximum())
    qtbot.waitUntil(lambda: "w60 " in shown_text(pane), timeout=ANSWER_TIMEOUT_MS)
    assert bar.value() == bar.maximum(), "back at the bottom, it follows again"
    assert "Question 0" in shown_text(pane) and "Answer 99" in shown_text(pane)
    with qtbot.waitSignal(pane.answerFinished, timeout=ANSWER_TIMEOUT_MS):
        pane.stop()


def test_a_failed_answer_shows_the_reason(qtbot, make_pane, fake_session, chat_history) -> None:
    fake_session.fail_with = ModelError("Not enough memory to generate this answer.")
    pane = make_pane()
    with qtbot.waitSignal(pane.statusMessage, timeout=ANSWER_TIMEOUT_MS) as status:
        type_and_press_enter(qtbot, pane, "Write a novel")
    assert status.args[0] == "Not enough memory to generate this answer."
    qtbot.waitUntil(lambda: not pane.busy, timeout=ANSWER_TIMEOUT_MS)
    assert "Not enough memory to generate this answer." in shown_text(pane)
    assert chat_history.load(pane.conversation_id).messages == [{"role": "user", "content": "Write a novel"}]
    fake_session.fail_with = None
    with qtbot.waitSignal(pane.answerFinished, timeout=ANSWER_TIMEOUT_MS):
        qtbot.mouseClick(button(pane, "chatRegenerate"), Qt.MouseButton.LeftButton)
    assert "Not enough memory" not in shown_text(pane), "the error goes once the user retries"
    assert [message["role"] for message in chat_history.load(pane.conversation_id).messages] == ["user", "assistant"]


# --- regenerate, edit, copy ------------------------------------------------------------------------------------


def test_regenerate_replaces_the_last_answer(qtbot, make_pane, fake_session, chat_history) -> None:
    fake_session.words = ["first ", "answer"]
    pane = make_pane()
    send_and_wait(qtbot, pane, "Name a colour")
    assert "first answer" in shown_text(pane)
    fake_session.words = ["second ", "answer"]
    with qtbot.waitSignal(pane.answerFinished, timeout=ANSWER_TIMEOUT_MS) as finished:
        qtbot.mouseClick(button(pane, "chatRegenerate"), Qt.MouseButton.LeftButton)
    assert finished.args[0] == "second answer"
    assert "second answer" in shown_text(pane) and "first answer" not in shown_text(pane)
    assert list(fake_session.requests[-1].history) == [{"role": "user", "content": "Name a colour"}]
    assert chat_history.load(pane.conversation_id).messages == [
        {"role": "user", "content": "Name a colour"},
        {"role": "assistant", "content": "second answer"},
    ]


def test_edit_last_puts_the_message_back_for_resending(qtbot, make_pane, fake_session, chat_history) -> None:
    pane = make_pane()
    send_and_wait(qtbot, pane, "Wirte a haiku")
    send_and_wait(qtbot, pane, "Make it sadder")
    qtbot.mouseClick(button(pane, "chatEditLast"), Qt.MouseButton.LeftButton)
    assert input_of(pane).toPlainText() == "Make it sadder"
    assert "Make it sadder" not in shown_text(pane) and "Wirte a haiku" in shown_text(pane)
    assert len(chat_history.load(pane.conversation_id).messages) == 2
    input_of(pane).clear()
    send_and_wait(qtbot, pane, "Make it happier")
    messages = chat_history.load(pane.conversation_id).messages
    assert [message["content"] for message in messages if message["role"] == "user"] == [
        "Wirte a haiku",
        "Make it happier",
    ]


def test_copy_puts_the_last_answer_on_the_clipboard(qtbot, make_pane, fake_session) -> None:
    fake_session.words = ["**Bold** ", "claim"]
    pane = make_pane()
    assert not button(pane, "chatCopy").isEnabled()
    send_and_wait(qtbot, pane, "Say something")
    qtbot.mouseClick(button(pane, "chatCopy"), Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == "**Bold** claim", "the answer is copied as its Markdown source"


# --- conversations ---------------------------------------------------------------------------------------------


def test_new_chat_mid_answer_never_shows_the_old_answer(qtbot, make_pane, fake_session, app_settings) -> None:
    long_answers(app_settings)
    fake_session.words = slow_words("old")
    pane = make_pane()
    type_and_press_enter(qtbot, pane, "First chat")
    qtbot.waitUntil(lambda: "old2 " in shown_text(pane), timeout=ANSWER_TIMEOUT_MS)
    first_chat = pane.conversation_id
    qtbot.mouseClick(button(pane, "chatNew"), Qt.MouseButton.LeftButton)
    assert shown_text(pane).strip() == "" and not pane.busy and pane.conversation_id is None
    fake_session.words = ["new ", "answer"]
    send_and_wait(qtbot, pane, "Second chat")  # the worker ran the old job to its end before this one
    assert "old" not in shown_text(pane)
    assert "Second chat" in shown_text(pane) and "new answer" in shown_text(pane)
    old_messages = pane.history.load(first_chat).messages
    assert old_messages[-1]["content"].startswith("old0 old1 old2"), "what had arrived stays in its own chat"
    assert len(old_messages[-1]["content"].split()) < 2000


def test_switching_chats_mid_answer_discards_it(qtbot, make_pane, fake_session, app_settings, chat_history) -> None:
    earlier = chat_history.create_conversation()
    chat_history.append_message(earlier, "user", "An earlier question")
    chat_history.append_message(earlier, "assistant", "An earlier answer")
    long_answers(app_settings)
    fake_session.words = slow_words("stale")
    pane = make_pane()
    type_and_press_enter(qtbot, pane, "A new question")
    qtbot.waitUntil(lambda: "stale2 " in shown_text(pane), timeout=ANSWER_TIMEOUT_MS)

    chat_list = pane.findChild(QListWidget, "chatList")
    titles = [chat_list.item(row).text() for row in range(chat_list.count())]
    assert titles == ["A new question", "An earlier question"]
    earlier_item = chat_list.item(1)
    qtbot.mouseClick(
        chat_list.viewport(), Qt.MouseButton.LeftButton, pos=chat_list.visualItemRect(earlier_item).center()
    )
    assert pane.conversation_id == earlier and not pane.busy
    assert "An earlier answer" in shown_text(pane) and "stale" not in shown_text(pane)

    fake_session.words = ["fresh ", "reply"]
    send_and_wait(qtbot, pane, "Follow-up")
    assert "stale" not in shown_text(pane) and "fresh reply" in shown_text(pane)
    assert [message["content"] for message in chat_history.load(earlier).messages] == [
        "An earlier question",
        "An earlier answer",
        "Follow-up",
        "fresh reply",
    ]


def test_conversations_survive_a_restart(qtbot, make_pane, fake_session) -> None:
    fake_session.words = ["Paris ", "is ", "the ", "capital."]
    first_run = ChatHistory()
    pane = make_pane(history=first_run)
    send_and_wait(qtbot, pane, "Capital of France?")
    pane.close()
    first_run.close()

    second_run = ChatHistory()
    try:
        restarted = make_pane(history=second_run)
        chat_list = restarted.findChild(QListWidget, "chatList")
        assert chat_list.count() == 1 and chat_list.item(0).text() == "Capital of France?"
        assert restarted.conversation_id is None, "a restart opens on a new chat"
        rect = chat_list.visualItemRect(chat_list.item(0))
        qtbot.mouseClick(chat_list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        assert "Capital of France?" in shown_text(restarted) and "Paris is the capital." in shown_text(restarted)
        restarted.close()
    finally:
        second_run.close()


def test_deleting_the_shown_chat_starts_a_new_one(qtbot, make_pane, chat_history) -> None:
    pane = make_pane()
    send_and_wait(qtbot, pane, "Throwaway")
    pane.delete_conversation(pane.conversation_id)
    assert pane.conversation_id is None and shown_text(pane).strip() == ""
    assert pane.findChild(QListWidget, "chatList").count() == 0
    assert chat_history.list_conversations() == []


def test_system_prompt_is_sent_and_kept_with_the_chat(qtbot, make_pane, fake_session, chat_history) -> None:
    settings = AppSettings(chat_system_prompt="You are terse.")
    pane = make_pane(settings=settings)
    prompt_box = pane.findChild(QLineEdit, "chatSystemPrompt")
    assert prompt_box.text() == "You are terse.", "the default comes from the settings"
    prompt_box.setText("You are a pirate.")
    send_and_wait(qtbot, pane, "Hello")
    assert fake_session.requests[0].system_prompt == "You are a pirate."
    conversation = pane.conversation_id
    assert chat_history.load(conversation).system_prompt == "You are a pirate."
    qtbot.mouseClick(button(pane, "chatNew"), Qt.MouseButton.LeftButton)
    assert prompt_box.text() == "You are terse."
    pane.load_conversation(conversation)
    assert prompt_box.text() == "You are a pirate."


# --- rendering and safety --------------------------------------------------------------------------------------


def test_markdown_renders_bold_and_code_blocks_and_no_raw_html(qtbot, make_pane, fake_session) -> None:
    fake_session.words = ["Some **strong** words <b>raw</b>\n\n", "```python\n", "print('hi')\n", "```\n"]
    pane = make_pane()
    send_and_wait(qtbot, pane, "Format something")
    document = view_of(pane).document()
    text = document.toPlainText()
    assert "**" not in text and "Some strong words" in text
    assert "<b>raw</b>" in text, "HTML in an answer shows as text, never as markup"

    found = document.find("strong")
    assert found.charFormat().fontWeight() == QFont.Weight.Bold
    code_block = document.find("print('hi')").block()
    assert code_block.blockFormat().hasProperty(QTextFormat.Property.BlockCodeFence)
    assert code_block.blockFormat().stringProperty(QTextFormat.Property.BlockCodeLanguage) == "python"
    assert "```python" in document.toMarkdown()


def test_an_unfinished_code_block_does_not_swallow_the_next_message(qtbot, make_pane, fake_session, app_settings):
    long_answers(app_settings)
    fake_session.words = ["```python\n"] + [f"line{index} = {index}\n" for index in range(2000)]
    pane = make_pane()
    type_and_press_enter(qtbot, pane, "Write code")
    qtbot.waitUntil(lambda: "line3 = 3" in shown_text(pane), timeout=ANSWER_TIMEOUT_MS)
    with qtbot.waitSignal(pane.answerFinished, timeout=ANSWER_TIMEOUT_MS):
        pane.stop()
    fake_session.words = ["done"]
    send_and_wait(qtbot, pane, "Thanks")
    document = view_of(pane).document()
    assert not document.find("Thanks").block().blockFormat().hasProperty(QTextFormat.Property.BlockCodeFence)


def test_images_in_answers_are_never_fetched(qtbot, make_pane, fake_session) -> None:
    server = QTcpServer()
    assert server.listen(QHostAddress.SpecialAddress.LocalHost, 0)
    port = server.serverPort()
    try:
        fake_session.words = [
            f"Look: ![chart](http://127.0.0.1:{port}/chart.png)\n\n",
            f"![local](file:///etc/hostname) <img src='http://127.0.0.1:{port}/tracker.gif'>",
        ]
        pane = make_pane()
        send_and_wait(qtbot, pane, "Show me a chart")
        view = view_of(pane)
        qtbot.waitUntil(
            lambda: any(str(port) in url.toString() for url in view.refused_resources), timeout=ANSWER_TIMEOUT_MS
        )
        assert any(url.scheme() == "file" for url in view.refused_resources), "local files are not read either"
        QApplication.processEvents()
        assert not server.hasPendingConnections(), "the view never connected to the image's server"
        assert view.openLinks() is False and view.openExternalLinks() is False
    finally:
        server.close()


def test_links_open_in_the_browser_only_when_clicked(qtbot, make_pane, fake_session, monkeypatch) -> None:
    opened: list[QUrl] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", staticmethod(lambda url: opened.append(QUrl(url)) or True))
    fake_session.words = ["See [the manual](https://example.org/docs) or [this](file:///etc/passwd)."]
    pane = make_pane()
    send_and_wait(qtbot, pane, "Where is the help?")
    assert opened == [], "nothing opens by itself"
    view = view_of(pane)

    def click_on(text: str) -> None:
        cursor = view.document().find(text)
        cursor.setPosition(cursor.selectionStart() + 1, QTextCursor.MoveMode.MoveAnchor)
        point = view.cursorRect(cursor).center() + QPoint(2, 0)
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=point)

    with qtbot.waitSignal(view.anchorClicked, timeout=ANSWER_TIMEOUT_MS):
        click_on("the manual")
    assert [url.toString() for url in opened] == ["https://example.org/docs"]
    with qtbot.waitSignal(view.anchorClicked, timeout=ANSWER_TIMEOUT_MS):
        click_on("this")
    assert len(opened) == 1, "file: links stay inert"


# --- export ----------------------------------------------------------------------------------------------------


def test_export_writes_markdown_and_json(qtbot, make_pane, fake_session, monkeypatch, tmp_path: Path) -> None:
    fake_session.words = ["Use ", "`git init`."]
    pane = make_pane()
    send_and_wait(qtbot, pane, "How do I start a repo?")
    chosen = {"path": str(tmp_path / "exports" / "repo-chat")}
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *_args, **_kwargs: (chosen["path"], "")))
    actions = {action.objectName(): action for action in pane.pane_actions()}

    actions["chatExportMarkdownAction"].trigger()
    markdown = (tmp_path / "exports" / "repo-chat.md").read_text(encoding="utf-8")
    assert markdown.startswith("# How do I start a repo?")
    assert "## You\n\nHow do I start a repo?" in markdown and "## Penwright\n\nUse `git init`." in markdown

    chosen["path"] = str(tmp_path / "exports" / "repo-chat.json")
    actions["chatExportJsonAction"].trigger()
    data = json.loads((tmp_path / "exports" / "repo-chat.json").read_text(encoding="utf-8"))
    assert [message["content"] for message in data["messages"]] == ["How do I start a repo?", "Use `git init`."]


def test_export_cancelled_or_empty_writes_nothing(qtbot, make_pane, monkeypatch, tmp_path: Path) -> None:
    asked: list[str] = []
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *_args, **_kwargs: asked.append("x") or ("", ""))
    )
    pane = make_pane()
    statuses: list[str] = []
    pane.statusMessage.connect(statuses.append)
    assert pane.export_conversation("markdown") is None
    assert asked == [] and "nothing to export" in statuses[-1]
    send_and_wait(qtbot, pane, "Hi")
    assert pane.export_conversation("json") is None and asked == ["x"]
    assert list(tmp_path.glob("**/*.json")) == []


# --- explain code, actions, damaged history --------------------------------------------------------------------


def test_explain_code_adds_a_turn_with_the_code(qtbot, make_pane, fake_session, chat_history) -> None:
    fake_session.words = ["It ", "adds ", "two ", "numbers."]
    pane = make_pane()
    code = "def add(a, b):\n    return a + b"
    with qtbot.waitSignal(pane.answerFinished, timeout=ANSWER_TIMEOUT_MS) as finished:
        pane.explain_code(code, "python")
    assert finished.args[0] == "It adds two numbers."
    request = fake_session.requests[-1]
    assert isinstance(request, CodeRequest)
    assert (request.code, request.mode, request.language) == (code, "explain", "python")
    text = shown_text(pane)
    assert "Explain this Python code:" in text and "return a + b" in text and "It adds two numbers." in text
    code_block = view_of(pane).document().find("return a + b").block()
    assert code_block.blockFormat().hasProperty(QTextFormat.Property.BlockCodeFence)
    saved = chat_history.load(pane.conversation_id)
    assert saved.title == "Explain this Python code:"
    assert saved.messages[0]["content"] == f"Explain this Python code:\n\n```python\n{code}\n```"
    send_and_wait(qtbot, pane, "Now in Rust?")
    assert "return a + b" in fake_session.requests[-1].history[0]["content"], "a follow-up sees the code"


def test_actions_carry_the_documented_shortcuts(qtbot, make_pane) -> None:
    pane = make_pane()
    shortcuts = {action.text(): action.shortcut().toString() for action in pane.pane_actions()}
    assert shortcuts["Send"] == "Ctrl+Return"
    assert shortcuts["Regenerate"] == "Ctrl+Shift+R"
    assert shortcuts["Edit Last Message"] == "Ctrl+Shift+E"
    assert shortcuts["Copy Answer"] == "Ctrl+Shift+C"
    assert shortcuts["New Chat"] == "Ctrl+Shift+N"
    assert "Stop" in shortcuts and "Export as Markdown…" in shortcuts and "Export as JSON…" in shortcuts
    assert pane.menu_title == "Chat" and pane.objectName() == "chatPane"


def test_send_action_sends_the_typed_message(qtbot, make_pane, fake_session) -> None:
    pane = make_pane()
    qtbot.keyClicks(input_of(pane), "Via the menu")
    send_action = next(action for action in pane.pane_actions() if action.objectName() == "chatSendAction")
    with qtbot.waitSignal(pane.answerFinished, timeout=ANSWER_TIMEOUT_MS):
        send_action.trigger()
    assert fake_session.requests[0].history[-1]["content"] == "Via the menu"


def test_a_damaged_history_is_moved_aside_with_a_clear_message(qtbot, fake_client, app_settings) -> None:
    path = default_history_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not SQLite" * 100)
    pane = ChatPane(fake_client, app_settings)  # opens (and owns) the profile's history
    qtbot.addWidget(pane)
    try:
        with qtbot.waitSignal(pane.statusMessage, timeout=ANSWER_TIMEOUT_MS) as status:
            pane.show()
        assert "damaged" in status.args[0] and "chats.sqlite3.damaged" in status.args[0]
        notice = pane.findChild(QLabel, "chatNotice")
        assert notice.isVisible() and "damaged" in notice.text()
        assert path.with_name("chats.sqlite3.damaged").read_bytes().startswith(b"this is not SQLite")
        answer = send_and_wait(qtbot, pane, "Still works?")
        assert answer and pane.history.load(pane.conversation_id).messages[-1]["content"] == answer
    finally:
        pane.close()


# --- the real model --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_model_answers_and_the_answer_is_saved(qtbot, real_client, app_settings, chat_history) -> None:
    pane = ChatPane(real_client, app_settings, chat_history)
    qtbot.addWidget(pane)
    pane.show()
    try:
        with qtbot.waitSignal(pane.answerFinished, timeout=180000) as finished:
            type_and_press_enter(qtbot, pane, "Say hello in one short sentence.")
        answer = finished.args[0]
        assert answer.strip(), "the model wrote something"
        saved = chat_history.load(pane.conversation_id).messages
        assert saved == [
            {"role": "user", "content": "Say hello in one short sentence."},
            {"role": "assistant", "content": answer},
        ]
        after_label = shown_text(pane).split("Penwright", 1)[-1]
        assert after_label.strip(), "the answer is shown under its label"
    finally:
        pane.close()
