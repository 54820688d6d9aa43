"""The chat pane: a conversation with the local model, saved in the chat history and rendered as Markdown.

Rendering stays cheap however long a chat grows: a conversation is rendered whole only when it is opened or
edited; from then on only the newest turn is re-rendered (the streaming answer, at most every
``RENDER_INTERVAL_MS``), so a token costs the same in the first turn and the thousandth.
The view loads no resource of its own, remote or local: a model's answer may contain image links, and an
offline assistant must never make a request because of them. Links open in the browser only when clicked.
An answer belongs to the conversation it was asked in: switching chats or starting a new one discards it (what
had arrived is kept in its own conversation), so its text can never appear in another conversation.
"""

from __future__ import annotations

import re
from collections import deque
from pathlib import Path
from typing import Any

from PySide6.QtCore import QPoint, Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDesktopServices,
    QGuiApplication,
    QKeyEvent,
    QKeySequence,
    QTextBlockFormat,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
)
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from assistant.core.documents import write_text_atomic
from assistant.core.history import ROLE_NAMES, ChatHistory, HistoryError, close_open_fence
from assistant.core.languages import language_by_name
from assistant.core.prompts import ChatRequest, CodeRequest, default_system_prompt
from assistant.core.settings import AppSettings
from assistant.gui.jobs import JobRunner
from assistant.gui.panes.base import Pane
from assistant.gui.util import named
from assistant.gui.worker import AiClient

RENDER_INTERVAL_MS = 100
"""The streaming answer is re-rendered at most this often: smooth to read, cheap for the event loop."""
MARKDOWN_FEATURES = QTextDocument.MarkdownFeature.MarkdownDialectGitHub | QTextDocument.MarkdownFeature.MarkdownNoHTML
"""GitHub Markdown without raw HTML: a model's ``<img>`` or ``<script>`` shows as text, never as markup."""
LINK_SCHEMES = ("http", "https", "mailto")
"""Links a click may open; ``file:`` and the like could run or reveal local files, so they stay inert."""
WAITING_TEXT = "*…*"


def message_markdown(role: str, content: str) -> str:
    """One turn as Markdown: a bold label, then the text (an open code block closed, so it stays contained)."""
    body = close_open_fence(content.strip("\n")) or WAITING_TEXT
    return f"**{ROLE_NAMES.get(role, role)}**\n\n{body}\n"


def conversation_markdown(messages: list[dict[str, str]]) -> str:
    return "\n".join(message_markdown(message["role"], message["content"]) for message in messages)


def code_fence_for(code: str) -> str:
    """A fence longer than any run of backticks inside the code, so the code cannot end its own block."""
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    return "`" * max(3, longest + 1)


def safe_file_name(title: str) -> str:
    name = re.sub(r"[^\w\- ]+", "", title).strip()
    return name[:60] or "chat"


class ChatView(QTextBrowser):
    """The conversation, read-only. It fetches nothing: every resource request is refused and remembered.

    Signals: ``linkOpened(url)`` after a clicked link was handed to the system browser.
    """

    linkOpened = Signal(QUrl)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatView")
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.document().setUndoRedoEnabled(False)  # streaming edits would otherwise pile up undo history
        self.refused_resources: deque[QUrl] = deque(maxlen=50)
        """The latest resources the document asked for and did not get (images in answers), for diagnosis."""
        self.anchorClicked.connect(self._open_link)

    def loadResource(self, resource_type: int, url: QUrl | str) -> Any:  # noqa: N802 (Qt's name)
        """Refuse every image or style sheet a document asks for: no network, no local files."""
        self.refused_resources.append(QUrl(url))
        return None

    @Slot(QUrl)
    def _open_link(self, url: QUrl) -> None:
        if url.scheme().lower() in LINK_SCHEMES:
            QDesktopServices.openUrl(url)
            self.linkOpened.emit(url)


class ChatInput(QPlainTextEdit):
    """The message box: Enter sends, Shift+Enter starts a new line.

    Signals: ``submitted()`` when the user pressed Enter.
    """

    submitted = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt's name)
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            modifiers = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
            if modifiers == Qt.KeyboardModifier.NoModifier:
                self.submitted.emit()
                return
            if modifiers == Qt.KeyboardModifier.ShiftModifier:
                self.insertPlainText("\n")
                return
        super().keyPressEvent(event)


class ChatPane(Pane):
    """Chat with the model: past conversations on the left, the current one on the right.

    Signals (besides ``statusMessage``):
        busyChanged(busy): an answer started (True) or ended (False).
        answerFinished(text): an answer ended (finished, stopped or failed); ``text`` is what was kept.
        conversationChanged(conversation_id): another conversation is shown (0: a new chat, not saved yet).
    """

    busyChanged = Signal(bool)
    answerFinished = Signal(str)
    conversationChanged = Signal(int)
    menu_title = "Chat"

    def __init__(
        self,
        client: AiClient,
        settings: AppSettings,
        history: ChatHistory | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(client, settings, parent)
        self.setObjectName("chatPane")
        self._owns_history = history is None
        self.history = history if history is not None else ChatHistory()
        self.conversation_id: int | None = None
        """The shown conversation's id, or None for a new chat that has no message yet."""
        self._messages: list[dict[str, str]] = []
        self._jobs = JobRunner(client, self)
        self._jobs.textArrived.connect(self._on_text)
        self._jobs.progress.connect(self.statusMessage)
        self._jobs.finished.connect(self._on_finished)
        self._jobs.failed.connect(self._on_failed)
        self._jobs.busyChanged.connect(self.busyChanged)
        self._job_conversation_id: int | None = None
        self._answer = ""
        self._tail_start = 0
        """Document position where the newest, still-changing part of the view starts."""
        self._updating_list = False
        self._shut_down = False
        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(RENDER_INTERVAL_MS)
        self._render_timer.timeout.connect(self._render_answer)

        self._build_widgets()
        self._actions = self._build_actions()
        self.addActions(self._actions)  # shortcuts work wherever the pane is, menu or not
        self._system_prompt_input.setText(self._default_system_prompt())
        self._refresh_list()
        self._render_conversation()
        self._update_controls()
        if self.history.notice:
            self._notice.setText(self.history.notice)
            self._notice.show()
            QTimer.singleShot(0, self, self._announce_history_notice)  # once the window has connected to us

    # --- building ----------------------------------------------------------------------------------------------

    def _build_widgets(self) -> None:
        self._new_button = named(QPushButton("New chat"), "chatNew")
        self._new_button.setToolTip("Start a new conversation (Ctrl+Shift+N)")
        self._new_button.clicked.connect(self.new_chat)
        self._list = named(QListWidget(), "chatList")
        self._list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self._list.customContextMenuRequested.connect(self._show_list_menu)
        self._list.currentItemChanged.connect(self._on_list_selection)
        sidebar = QWidget()
        sidebar_layout = QVBoxLayout(sidebar)
        sidebar_layout.setContentsMargins(0, 0, 0, 0)
        sidebar_layout.addWidget(self._new_button)
        sidebar_layout.addWidget(self._list)

        self._system_prompt_input = named(QLineEdit(), "chatSystemPrompt")
        self._system_prompt_input.setPlaceholderText("No system prompt")
        self._system_prompt_input.setToolTip("How the assistant should behave in this conversation")
        self._system_prompt_input.editingFinished.connect(self._save_system_prompt)
        prompt_row = QHBoxLayout()
        prompt_label = QLabel("System prompt:")
        prompt_label.setBuddy(self._system_prompt_input)
        prompt_row.addWidget(prompt_label)
        prompt_row.addWidget(self._system_prompt_input)

        self._notice = named(QLabel(), "chatNotice")
        self._notice.setWordWrap(True)
        self._notice.hide()
        self._view = ChatView()

        self._input = named(ChatInput(), "chatInput")
        self._input.setPlaceholderText("Message (Enter sends, Shift+Enter starts a new line)")
        self._input.setTabChangesFocus(True)
        self._input.setMaximumHeight(120)
        self._input.submitted.connect(self.send)
        self._send_button = named(QPushButton("Send"), "chatSend")
        self._send_button.clicked.connect(self.send)
        self._stop_button = named(QPushButton("Stop"), "chatStop")
        self._stop_button.setToolTip("Stop the answer and keep what it wrote (Esc)")
        self._stop_button.clicked.connect(self.stop)
        send_column = QVBoxLayout()
        send_column.addWidget(self._send_button)
        send_column.addWidget(self._stop_button)
        send_column.addStretch()
        input_row = QHBoxLayout()
        input_row.addWidget(self._input)
        input_row.addLayout(send_column)

        self._regenerate_button = named(QPushButton("Regenerate"), "chatRegenerate")
        self._regenerate_button.setToolTip("Write the last answer again (Ctrl+Shift+R)")
        self._regenerate_button.clicked.connect(self.regenerate)
        self._edit_button = named(QPushButton("Edit last"), "chatEditLast")
        self._edit_button.setToolTip("Put your last message back in the box to change and resend it (Ctrl+Shift+E)")
        self._edit_button.clicked.connect(self.edit_last)
        self._copy_button = named(QPushButton("Copy answer"), "chatCopy")
        self._copy_button.setToolTip("Copy the last answer as Markdown (Ctrl+Shift+C)")
        self._copy_button.clicked.connect(self.copy_last_answer)
        self._export_button = named(QToolButton(), "chatExport")
        self._export_button.setText("Export")
        self._export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        export_menu = QMenu(self._export_button)
        export_menu.addAction("Markdown…", lambda: self.export_conversation("markdown"))
        export_menu.addAction("JSON…", lambda: self.export_conversation("json"))
        self._export_button.setMenu(export_menu)
        tools_row = QHBoxLayout()
        for button in (self._regenerate_button, self._edit_button, self._copy_button):
            tools_row.addWidget(button)
        tools_row.addStretch()
        tools_row.addWidget(self._export_button)

        conversation = QWidget()
        conversation_layout = QVBoxLayout(conversation)
        conversation_layout.setContentsMargins(0, 0, 0, 0)
        conversation_layout.addLayout(prompt_row)
        conversation_layout.addWidget(self._notice)
        conversation_layout.addWidget(self._view, 1)
        conversation_layout.addLayout(tools_row)
        conversation_layout.addLayout(input_row)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(sidebar)
        splitter.addWidget(conversation)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([200, 600])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

    def _build_actions(self) -> list[QAction]:
        def action(name: str, text: str, slot: Any, shortcut: str = "") -> QAction:
            made = QAction(text, self)
            made.setObjectName(name)
            if shortcut:
                made.setShortcut(QKeySequence(shortcut))
            made.triggered.connect(slot)
            return made

        self._send_action = action("chatSendAction", "Send", self.send, "Ctrl+Return")
        # Esc reaches stop() through the main window; the shortcut here only labels the menu item (a widget-only
        # context never competes with the window's own Esc handling).
        self._stop_action = action("chatStopAction", "Stop", self.stop, "Esc")
        self._stop_action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        self._regenerate_action = action("chatRegenerateAction", "Regenerate", self.regenerate, "Ctrl+Shift+R")
        self._edit_action = action("chatEditLastAction", "Edit Last Message", self.edit_last, "Ctrl+Shift+E")
        self._copy_action = action("chatCopyAction", "Copy Answer", self.copy_last_answer, "Ctrl+Shift+C")
        self._new_action = action("chatNewAction", "New Chat", self.new_chat, "Ctrl+Shift+N")
        self._export_markdown_action = action(
            "chatExportMarkdownAction",
            "Export as Markdown…",
            lambda: self.export_conversation("markdown"),
            "Ctrl+Shift+M",
        )
        self._export_json_action = action(
            "chatExportJsonAction", "Export as JSON…", lambda: self.export_conversation("json"), "Ctrl+Shift+J"
        )
        return [
            self._send_action,
            self._stop_action,
            self._regenerate_action,
            self._edit_action,
            self._copy_action,
            self._new_action,
            self._export_markdown_action,
            self._export_json_action,
        ]

    # --- what the main window uses -----------------------------------------------------------------------------

    def pane_actions(self) -> list[QAction]:
        return list(self._actions)

    @property
    def busy(self) -> bool:
        """True while an answer is being written."""
        return self._jobs.busy

    @property
    def messages(self) -> list[dict[str, str]]:
        """A copy of the shown conversation's messages (the answer being written is not among them yet)."""
        return [dict(message) for message in self._messages]

    def stop(self) -> None:
        """Stop the answer; what it wrote so far is kept and saved once the worker confirms."""
        self._jobs.stop()

    def apply_settings(self, settings: AppSettings) -> None:
        old_default = self._default_system_prompt()
        super().apply_settings(settings)
        if self.conversation_id is None and self._system_prompt_input.text() == old_default:
            self._system_prompt_input.setText(self._default_system_prompt())

    def shutdown(self) -> None:
        """Keep what a running answer wrote, drop the job, and close the history if this pane opened it."""
        if self._shut_down:
            return
        self._shut_down = True
        self._abandon_answer(keep_partial=True)
        if self._owns_history:
            self.history.close()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt's name)
        self.shutdown()
        super().closeEvent(event)

    # --- user actions ------------------------------------------------------------------------------------------

    def send(self) -> None:
        """Send the typed message and stream the answer into the view."""
        text = self._input.toPlainText().strip("\n").rstrip()
        if not text.strip():
            return
        if self._jobs.busy:
            self.statusMessage.emit("Wait for the answer to finish, or press Stop.")
            return
        self._input.clear()
        self._save_system_prompt()
        self._add_message("user", text)
        self._start_answer(ChatRequest(self.messages, system_prompt=self._system_prompt_input.text()))

    def regenerate(self) -> None:
        """Write the answer to the last message again (a running answer is dropped)."""
        last_user = self._last_index("user")
        if last_user is None:
            self.statusMessage.emit("There is no message to answer yet.")
            return
        with self._jobs.replacing():  # busy throughout, no False/True flicker
            self._abandon_answer(keep_partial=False)
            self._truncate(last_user + 1)
            self._start_answer(ChatRequest(self.messages, system_prompt=self._system_prompt_input.text()))

    def edit_last(self) -> None:
        """Put the last message back in the box and remove it and its answer, so the user can change and resend."""
        last_user = self._last_index("user")
        if last_user is None:
            self.statusMessage.emit("There is no message to edit yet.")
            return
        self._abandon_answer(keep_partial=False)
        text = self._messages[last_user]["content"]
        self._truncate(last_user)
        self._input.setPlainText(text)
        self._input.moveCursor(QTextCursor.MoveOperation.End)
        self._input.setFocus()

    def copy_last_answer(self) -> None:
        last_answer = self._last_index("assistant")
        if last_answer is None:
            self.statusMessage.emit("There is no answer to copy yet.")
            return
        QGuiApplication.clipboard().setText(self._messages[last_answer]["content"])
        self.statusMessage.emit("Copied the answer.")

    def new_chat(self) -> None:
        """Show an empty conversation; it is saved once it has a first message."""
        self._abandon_answer(keep_partial=True)
        self.conversation_id = None
        self._messages = []
        self._system_prompt_input.setText(self._default_system_prompt())
        self._render_conversation()
        self._refresh_list()
        self._update_controls()
        self._input.setFocus()
        self.conversationChanged.emit(0)

    def load_conversation(self, conversation_id: int) -> None:
        """Show a saved conversation (a running answer stays with the conversation it was asked in)."""
        self._abandon_answer(keep_partial=True)
        try:
            conversation = self.history.load(conversation_id)
        except HistoryError as error:
            self.statusMessage.emit(str(error))
            self._refresh_list()
            return
        self.conversation_id = conversation.id
        self._messages = conversation.messages
        self._system_prompt_input.setText(
            self._default_system_prompt() if conversation.system_prompt is None else conversation.system_prompt
        )
        self._render_conversation()
        self._refresh_list()
        self._update_controls()
        self.conversationChanged.emit(conversation.id)

    def explain_code(self, code: str, language: str = "") -> None:
        """Ask for an explanation of code (the code pane's "Explain selection") as a new turn of this chat."""
        if not code.strip():
            self.statusMessage.emit("Select some code to explain.")
            return
        known = language_by_name(language) if language.strip() else None
        intro = f"Explain this {known.name} code:" if known else "Explain this code:"
        fence = code_fence_for(code)
        question = f"{intro}\n\n{fence}{known.fence if known else ''}\n{code.strip(chr(10))}\n{fence}"
        with self._jobs.replacing():
            self._abandon_answer(keep_partial=True)
            self._add_message("user", question)
            self._start_answer(CodeRequest(code, mode="explain", language=language.strip() or None))

    def rename_conversation(self, conversation_id: int, title: str) -> None:
        try:
            self.history.rename(conversation_id, title)
        except HistoryError as error:
            self.statusMessage.emit(str(error))
        self._refresh_list()

    def delete_conversation(self, conversation_id: int) -> None:
        """Delete a saved conversation for good; deleting the shown one starts a new chat."""
        if conversation_id == self.conversation_id:
            self._abandon_answer(keep_partial=False)
        try:
            self.history.delete_conversation(conversation_id)
        except HistoryError as error:
            self.statusMessage.emit(str(error))
        if conversation_id == self.conversation_id:
            self.new_chat()
        else:
            self._refresh_list()

    def export_conversation(self, kind: str) -> Path | None:
        """Save the conversation as Markdown ("markdown") or JSON ("json") where the user chooses."""
        if self.conversation_id is None or not self._messages:
            self.statusMessage.emit("There is nothing to export yet: send a message first.")
            return None
        suffix, file_filter = (".json", "JSON (*.json)") if kind == "json" else (".md", "Markdown (*.md)")
        try:
            title = self.history.load(self.conversation_id).title
            text = (
                self.history.export_json(self.conversation_id)
                if kind == "json"
                else self.history.export_markdown(self.conversation_id)
            )
        except HistoryError as error:
            self.statusMessage.emit(str(error))
            return None
        suggested = str(Path.home() / (safe_file_name(title) + suffix))
        chosen, _selected_filter = QFileDialog.getSaveFileName(self, "Export Chat", suggested, file_filter)
        if not chosen:
            return None
        target = Path(chosen)
        if not target.suffix:
            target = target.with_suffix(suffix)
        try:
            write_text_atomic(target, text)
        except OSError as error:
            self.statusMessage.emit(f"The chat could not be exported to {target.name}: {error.strerror or error}.")
            return None
        self.statusMessage.emit(f"Exported the chat to {target.name}.")
        return target

    # --- answers -----------------------------------------------------------------------------------------------

    def _start_answer(self, request: ChatRequest | CodeRequest) -> None:
        self._answer = ""
        self._job_conversation_id = self.conversation_id
        self._jobs.start(request, self.settings.sampler)
        self._render_answer()
        self._update_controls()

    @Slot(str)
    def _on_text(self, text: str) -> None:
        self._answer += text
        if not self._render_timer.isActive():
            self._render_timer.start()

    @Slot(object)
    def _on_finished(self, stats: dict[str, Any]) -> None:
        stopped = stats.get("finish_reason") == "cancelled"
        kept = self._end_answer()
        if stopped:
            self.statusMessage.emit("Stopped; the answer so far is kept." if kept else "Stopped before any answer.")
        elif not kept:
            self.statusMessage.emit("The model gave an empty answer; try Regenerate.")
        self.answerFinished.emit(kept)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        kept = self._end_answer()
        self._render_tail(f"**{ROLE_NAMES['assistant']}**\n\n*{message}*\n")  # shown, never saved
        self.statusMessage.emit(message)
        self.answerFinished.emit(kept)

    def _end_answer(self) -> str:
        """The job is over (the runner released it): save and show what it wrote (empty answers are not saved)."""
        self._render_timer.stop()
        text = self._answer.strip()
        if text:
            self._store_answer(text)
            self._render_tail(message_markdown("assistant", text))
            self._tail_start = self._document_end()
            self._refresh_list()
        else:
            self._render_tail("")
        self._update_controls()
        return text

    def _abandon_answer(self, keep_partial: bool) -> None:
        """Drop the running job so nothing more of it arrives; optionally keep (save) what it wrote."""
        if not self._jobs.busy:
            return
        self._render_timer.stop()
        self._jobs.discard()
        text = self._answer.strip()
        if keep_partial and text:
            self._store_answer(text)
            self._render_tail(message_markdown("assistant", text))
            self._tail_start = self._document_end()
        else:
            self._render_tail("")
        self._update_controls()

    def _store_answer(self, text: str) -> None:
        """Save an answer in the conversation it was asked in (always the shown one: switching abandons)."""
        if self._job_conversation_id == self.conversation_id:
            self._messages.append({"role": "assistant", "content": text})
        if self._job_conversation_id is not None:
            try:
                self.history.append_message(self._job_conversation_id, "assistant", text)
            except HistoryError as error:
                self.statusMessage.emit(str(error))

    # --- conversation state --------------------------------------------------------------------------------

    def _add_message(self, role: str, content: str) -> None:
        """Append a message: saved (the conversation is created with its first message) and shown."""
        self._messages.append({"role": role, "content": content})
        try:
            if self.conversation_id is None:
                self.conversation_id = self.history.create_conversation(system_prompt=self._system_prompt_input.text())
                self.conversationChanged.emit(self.conversation_id)
            self.history.append_message(self.conversation_id, role, content)
        except HistoryError as error:
            self.statusMessage.emit(str(error))
        self._render_tail(message_markdown(role, content), scroll_to_end=True)  # the user's own turn: show it
        self._tail_start = self._document_end()
        self._refresh_list()
        self._update_controls()

    def _truncate(self, position: int) -> None:
        """Remove the message at ``position`` and all after it, in the view and the history."""
        if position < len(self._messages):
            del self._messages[position:]
            if self.conversation_id is not None:
                try:
                    self.history.delete_messages_from(self.conversation_id, position)
                except HistoryError as error:
                    self.statusMessage.emit(str(error))
        self._render_conversation()
        self._update_controls()

    def _last_index(self, role: str) -> int | None:
        for index in range(len(self._messages) - 1, -1, -1):
            if self._messages[index]["role"] == role:
                return index
        return None

    def _default_system_prompt(self) -> str:
        if self.settings.chat_system_prompt is not None:
            return self.settings.chat_system_prompt
        return default_system_prompt()

    @Slot()
    def _save_system_prompt(self) -> None:
        if self.conversation_id is None:
            return
        try:
            self.history.set_system_prompt(self.conversation_id, self._system_prompt_input.text())
        except HistoryError as error:
            self.statusMessage.emit(str(error))

    @Slot()
    def _announce_history_notice(self) -> None:
        self.statusMessage.emit(self.history.notice)

    # --- the conversation list -----------------------------------------------------------------------------

    def _refresh_list(self) -> None:
        try:
            summaries = self.history.list_conversations()
        except HistoryError as error:
            self.statusMessage.emit(str(error))
            return
        self._updating_list = True
        try:
            self._list.clear()
            for summary in summaries:
                item = QListWidgetItem(summary.title)
                item.setData(Qt.ItemDataRole.UserRole, summary.id)
                updated = summary.updated.astimezone().strftime("%Y-%m-%d %H:%M")
                item.setToolTip(f"{summary.title}\n{summary.message_count} messages, last on {updated}")
                self._list.addItem(item)
                if summary.id == self.conversation_id:
                    self._list.setCurrentItem(item)
        finally:
            self._updating_list = False

    @Slot(QListWidgetItem, QListWidgetItem)
    def _on_list_selection(self, current: QListWidgetItem | None, _previous: QListWidgetItem | None) -> None:
        if self._updating_list or current is None:
            return
        conversation_id = current.data(Qt.ItemDataRole.UserRole)
        if conversation_id != self.conversation_id:
            self.load_conversation(int(conversation_id))

    @Slot(QPoint)
    def _show_list_menu(self, position: QPoint) -> None:
        item = self._list.itemAt(position)
        if item is None:
            return
        conversation_id = int(item.data(Qt.ItemDataRole.UserRole))
        menu = QMenu(self._list)
        rename = menu.addAction("Rename…")
        delete = menu.addAction("Delete")
        chosen = menu.exec(self._list.viewport().mapToGlobal(position))
        if chosen is rename:
            title, accepted = QInputDialog.getText(self, "Rename Chat", "Title:", text=item.text())
            if accepted:
                self.rename_conversation(conversation_id, title)
        elif chosen is delete:
            answer = QMessageBox.question(self, "Delete Chat", f"Delete “{item.text()}” for good?")
            if answer == QMessageBox.StandardButton.Yes:
                self.delete_conversation(conversation_id)

    # --- rendering ---------------------------------------------------------------------------------------------

    def _document_end(self) -> int:
        return self._view.document().characterCount() - 1

    def _render_conversation(self) -> None:
        """Render the whole conversation: only when it is opened or its history changed, never per token."""
        self._view.document().setMarkdown(conversation_markdown(self._messages), MARKDOWN_FEATURES)
        self._tail_start = self._document_end()
        bar = self._view.verticalScrollBar()
        bar.setValue(bar.maximum())

    @Slot()
    def _render_answer(self) -> None:
        if self._jobs.busy:
            self._render_tail(message_markdown("assistant", self._answer))

    def _render_tail(self, markdown: str, scroll_to_end: bool = False) -> None:
        """Replace everything after ``_tail_start`` with ``markdown``: cost grows with the newest turn only.

        The view follows the new text unless the user scrolled up to read (or ``scroll_to_end`` insists).
        """
        bar = self._view.verticalScrollBar()
        follow = scroll_to_end or bar.value() >= bar.maximum() - 8
        cursor = QTextCursor(self._view.document())
        cursor.beginEditBlock()
        cursor.setPosition(min(self._tail_start, self._document_end()))
        cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()
        if markdown:
            if cursor.position() > 0:
                cursor.insertBlock(QTextBlockFormat(), QTextCharFormat())
            else:  # an empty document: undo any format the removed text left behind
                cursor.setBlockFormat(QTextBlockFormat())
                cursor.setCharFormat(QTextCharFormat())
            cursor.insertMarkdown(markdown, MARKDOWN_FEATURES)
        cursor.endEditBlock()
        if follow:
            bar.setValue(bar.maximum())

    def _update_controls(self) -> None:
        busy = self._jobs.busy
        has_question = self._last_index("user") is not None
        has_answer = self._last_index("assistant") is not None
        can_export = self.conversation_id is not None and bool(self._messages)
        for widget, enabled in (
            (self._send_button, not busy),
            (self._send_action, not busy),
            (self._stop_button, busy),
            (self._stop_action, busy),
            (self._regenerate_button, has_question),
            (self._regenerate_action, has_question),
            (self._edit_button, has_question),
            (self._edit_action, has_question),
            (self._copy_button, has_answer),
            (self._copy_action, has_answer),
            (self._export_button, can_export),
            (self._export_markdown_action, can_export),
            (self._export_json_action, can_export),
        ):
            widget.setEnabled(enabled)
