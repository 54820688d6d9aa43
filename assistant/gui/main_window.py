"""The main window: three panes, menus, status bar, file handling and autosave. No model logic lives here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeyEvent, QKeySequence
from PySide6.QtWidgets import QLabel, QMainWindow, QMenu, QProgressBar, QTabWidget, QWidget

from assistant import __version__
from assistant.core.errors import PenwrightError
from assistant.core.recovery import RecoveryStore
from assistant.core.settings import AppSettings, save_settings
from assistant.engine.remote import RemoteChoice, RemoteModelInfo, host_of, normalize_base_url
from assistant.engine.session import ModelChoice, ModelInfo
from assistant.gui.documents import DocumentController, Prompter
from assistant.gui.panes.base import Pane
from assistant.gui.panes.chat import ChatPane
from assistant.gui.panes.code import CodePane
from assistant.gui.panes.editor import EditorPane
from assistant.gui.theme import apply_theme
from assistant.gui.util import named
from assistant.gui.worker import AiClient, BackendChoice

if TYPE_CHECKING:
    from assistant.gui.voice_dialog import VoiceDialog

CODE_FILTER = (
    "Code (*.py *.js *.ts *.tsx *.jsx *.c *.h *.cpp *.hpp *.cc *.rs *.go *.java *.kt *.rb *.php *.cs *.swift "
    "*.sh *.sql *.html *.css *.json *.toml *.yaml *.yml *.md);;All files (*)"
)
TEXT_FILTER = "Text and Markdown (*.txt *.md *.markdown *.text);;All files (*)"
CODE_SUFFIXES = {
    ".py", ".js", ".ts", ".tsx", ".jsx", ".c", ".h", ".cpp", ".hpp", ".cc", ".rs", ".go", ".java", ".kt", ".rb",
    ".php", ".cs", ".swift", ".sh", ".sql", ".html", ".css", ".json", ".toml", ".yaml", ".yml",
}  # fmt: skip


class MainWindow(QMainWindow):
    """Signals:
    settingsChanged(AppSettings): the user changed settings (already applied and saved).
    """

    settingsChanged = Signal(object)

    def __init__(
        self,
        client: AiClient,
        settings: AppSettings,
        prompter_factory: Callable[[QWidget], Prompter] = Prompter,
        recovery: RecoveryStore | None = None,
    ) -> None:
        super().__init__()
        self.setObjectName("mainWindow")
        self.client = client
        self.settings = settings
        self.prompter = prompter_factory(self)
        self.recovery = recovery or RecoveryStore()
        self._closing_confirmed = False

        self.editor_pane = EditorPane(client, settings)
        self.chat_pane = ChatPane(client, settings)
        self.code_pane = CodePane(client, settings)
        self.panes: list[Pane] = [self.editor_pane, self.chat_pane, self.code_pane]
        self.tabs = named(QTabWidget(), "paneTabs")
        self.tabs.addTab(self.editor_pane, "Editor")
        self.tabs.addTab(self.chat_pane, "Chat")
        self.tabs.addTab(self.code_pane, "Code")
        self.setCentralWidget(self.tabs)
        # Switching panes puts the cursor where the user types: the editor, the chat box, the code.
        self.editor_pane.setFocusProxy(self.editor_pane.editor)
        self.code_pane.setFocusProxy(self.code_pane.editor)
        chat_input = self.chat_pane.findChild(QWidget, "chatInput")
        if chat_input is not None:
            self.chat_pane.setFocusProxy(chat_input)

        self.editor_doc = DocumentController(
            self.editor_pane.editor,
            "editor",
            self.prompter,
            self.recovery,
            TEXT_FILTER,
            get_metadata=self.editor_pane.story_metadata,
            set_metadata=self.editor_pane.set_story_metadata,
        )
        self.code_doc = DocumentController(self.code_pane.editor, "code", self.prompter, self.recovery, CODE_FILTER)
        self.code_doc.on_file_changed(lambda path: self.code_pane.set_file_name(path.name if path else None))
        self.editor_pane.metadataChanged.connect(self.editor_doc.metadata_changed)
        for document in (self.editor_doc, self.code_doc):
            document.titleChanged.connect(self._update_titles)
            document.opened.connect(self._remember_recent)
        self.code_pane.explainRequested.connect(self._explain_in_chat)
        for pane in self.panes:
            pane.statusMessage.connect(lambda text: self.statusBar().showMessage(text, 8000))

        self._build_status_bar()
        self._build_menus()
        self.tabs.currentChanged.connect(self._pane_switched)
        self._pane_switched(0)

        client.stateChanged.connect(self._show_state)
        client.loadProgress.connect(self._show_load_progress)
        client.modelLoaded.connect(self._show_model)
        client.loadFailed.connect(self._show_load_failure)
        client.speedChanged.connect(lambda speed: self.status_speed.setText(f"{speed:.1f} tokens/s"))
        client.voiceChanged.connect(self._show_voice)
        client.voiceFailed.connect(lambda message: self.statusBar().showMessage(message, 15000))
        self.voice_dialog: VoiceDialog | None = None
        self._show_state(client.state)
        if client.model_info is not None:
            self._show_model(client.model_info)

        self.autosave_timer = QTimer(self)
        self.autosave_timer.timeout.connect(self.autosave)
        self.apply_settings(settings)
        if settings.window_geometry:
            self.restoreGeometry(QByteArray.fromBase64(settings.window_geometry.encode("ascii")))
        else:
            self.resize(1100, 760)
        self._update_titles()

    # --- building ------------------------------------------------------------------------------------------

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.status_model = named(QLabel("No model yet"), "statusModel")
        self.status_state = named(QLabel(""), "statusState")
        self.status_speed = named(QLabel(""), "statusSpeed")
        self.status_progress = named(QProgressBar(), "statusProgress")
        self.status_progress.setRange(0, 0)  # busy indicator: loading stages have no reliable fraction
        self.status_progress.setMaximumWidth(160)
        self.status_progress.hide()
        for widget in (self.status_progress, self.status_state, self.status_speed, self.status_model):
            bar.addPermanentWidget(widget)

    def _action(
        self, text: str, shortcut: QKeySequence | QKeySequence.StandardKey | str | None, slot: Callable[[], object]
    ) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(lambda _checked=False: slot())
        return action

    def _build_menus(self) -> None:
        menu_bar = self.menuBar()
        file_menu = menu_bar.addMenu("&File")
        self.new_action = self._action("&New", QKeySequence.StandardKey.New, lambda: self._document().new())
        self.open_action = self._action("&Open…", QKeySequence.StandardKey.Open, self.open_dialog)
        self.save_action = self._action("&Save", QKeySequence.StandardKey.Save, lambda: self._document().save())
        self.save_as_action = self._action("Save &As…", "Ctrl+Shift+S", lambda: self._document().save_as())
        self.recent_menu = QMenu("Open &Recent", self)
        self.settings_action = self._action("Se&ttings…", "Ctrl+,", self.open_settings)
        self.settings_action.setMenuRole(QAction.MenuRole.PreferencesRole)
        quit_action = self._action("&Quit", "Ctrl+Q", self.close)
        file_menu.addActions([self.new_action, self.open_action])
        file_menu.addMenu(self.recent_menu)
        file_menu.addActions([self.save_action, self.save_as_action])
        file_menu.addSeparator()
        file_menu.addAction(self.settings_action)
        file_menu.addSeparator()
        file_menu.addAction(quit_action)
        self._rebuild_recent_menu()

        view_menu = menu_bar.addMenu("&View")
        for index, name in enumerate(("&Editor", "C&hat", "&Code")):
            view_menu.addAction(self._action(name, f"Ctrl+{index + 1}", self._pane_switcher(index)))
        view_menu.addSeparator()
        self.stop_action = self._action("&Stop generating", "Esc", self.stop_current)
        # Listed in the menu; Esc itself arrives through keyPressEvent once no child (find bar, dialog) used it.
        self.stop_action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        view_menu.addAction(self.stop_action)
        view_menu.addAction(self.editor_pane.synopsis_action)  # also in the Assist menu; live while the editor shows

        self.pane_menus: list[QMenu] = []
        for pane in self.panes:
            menu = menu_bar.addMenu(f"&{pane.menu_title}")
            menu.addActions(pane.pane_actions())
            self.pane_menus.append(menu)
            toolbar = self.addToolBar(pane.menu_title)
            toolbar.setObjectName(f"{pane.objectName()}Toolbar")
            toolbar.addActions([action for action in pane.pane_actions() if action.property("toolbar") is not False])
            toolbar.setVisible(False)
            pane.setProperty("toolbar", toolbar)

        # Learning a voice is about the writer's prose: it sits with the editor's assists (and works from any pane).
        self.learn_voice_action = self._action("Learn my &voice…", "Ctrl+Shift+L", self.open_voice_dialog)
        self.learn_voice_action.setToolTip("Adapt the model to your own writing, on this computer")
        self.addAction(self.learn_voice_action)
        self.pane_menus[0].addSeparator()
        self.pane_menus[0].addAction(self.learn_voice_action)

        help_menu = menu_bar.addMenu("&Help")
        help_menu.addAction(self._action("&Keyboard shortcuts", "F1", self.show_shortcuts))
        help_menu.addAction(self._action("&About Penwright", None, self.show_about))

    def _pane_switcher(self, index: int) -> Callable[[], None]:
        return lambda: self.tabs.setCurrentIndex(index)

    def _file_opener(self, path: str) -> Callable[[], bool]:
        return lambda: self.open_file(path)

    # --- panes ---------------------------------------------------------------------------------------------

    def _pane_switched(self, index: int) -> None:
        """Only the shown pane's actions are live, so the same shortcut can mean one thing per pane."""
        for pane_index, (pane, menu) in enumerate(zip(self.panes, self.pane_menus, strict=True)):
            current = pane_index == index
            menu.menuAction().setVisible(current)
            for action in pane.pane_actions():
                action.setEnabled(current)
            toolbar = pane.property("toolbar")
            if toolbar is not None:
                toolbar.setVisible(current)
        self.panes[index].setFocus(Qt.FocusReason.TabFocusReason)
        document_pane = index != 1
        for action in (self.new_action, self.open_action, self.save_action, self.save_as_action):
            action.setEnabled(document_pane)
        self._update_titles()

    def current_pane(self) -> Pane:
        return self.panes[self.tabs.currentIndex()]

    def _document(self) -> DocumentController:
        return self.code_doc if self.tabs.currentWidget() is self.code_pane else self.editor_doc

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt's name)
        if event.key() == Qt.Key.Key_Escape:
            self.stop_current()
            event.accept()
            return
        super().keyPressEvent(event)

    def stop_current(self) -> None:
        self.current_pane().stop()

    def _explain_in_chat(self, code: str, language: str) -> None:
        self.tabs.setCurrentWidget(self.chat_pane)
        self.chat_pane.explain_code(code, language)

    # --- files ---------------------------------------------------------------------------------------------

    def open_dialog(self) -> None:
        self._document().ask_and_open()

    def open_file(self, path: str | Path) -> bool:
        """Open a file in the pane that fits it: code files in the code pane, everything else in the editor."""
        is_code = Path(path).suffix.lower() in CODE_SUFFIXES
        pane = self.code_pane if is_code else self.editor_pane
        document = self.code_doc if is_code else self.editor_doc
        self.tabs.setCurrentWidget(pane)
        return document.open_path(path)

    def _remember_recent(self, path: str) -> None:
        self.settings.add_recent(path)
        self._rebuild_recent_menu()
        self._save_settings()

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        for index, path in enumerate(self.settings.recent_files):
            shortcut = f"Ctrl+Alt+{index + 1}" if index < 9 else None
            self.recent_menu.addAction(self._action(path, shortcut, self._file_opener(path)))
        self.recent_menu.setEnabled(bool(self.settings.recent_files))

    def _update_titles(self) -> None:
        for pane, document, label in (
            (self.editor_pane, self.editor_doc, "Editor"),
            (self.code_pane, self.code_doc, "Code"),
        ):
            marker = "*" if document.modified else ""
            name = document.display_name if document.path else label
            self.tabs.setTabText(self.panes.index(pane), f"{name}{marker}")
        document = self._document()
        if self.tabs.currentWidget() is self.chat_pane:
            self.setWindowTitle("Chat — Penwright")
        else:
            self.setWindowTitle(f"{document.display_name}{'*' if document.modified else ''} — Penwright")

    # --- autosave and recovery -----------------------------------------------------------------------------

    def autosave(self) -> None:
        self.editor_doc.autosave()
        self.code_doc.autosave()

    def offer_recovery(self) -> int:
        """After a crash, offer the snapshots left behind; returns how many documents were restored."""
        leftovers = self.recovery.leftovers()
        if not leftovers:
            return 0
        names = ", ".join(snapshot.title for snapshot in leftovers[:5])
        if not self.prompter.confirm(
            "Restore unsaved work?",
            f"Penwright did not close properly last time. Restore {len(leftovers)} unsaved document(s) ({names})?",
        ):
            for snapshot in leftovers:
                self.recovery.discard(snapshot.document_id)
            return 0
        restored = 0
        for kind, document in (("editor", self.editor_doc), ("code", self.code_doc)):
            mine = [snapshot for snapshot in leftovers if snapshot.pane == kind]
            if mine:
                document.restore(mine[0])  # newest first
                restored += 1
                for older in mine[1:]:  # one document per pane: older ones are kept for the next start
                    older.saved_at -= 1
        self.tabs.setCurrentWidget(self.editor_pane if any(s.pane == "editor" for s in leftovers) else self.code_pane)
        return restored

    # --- voices --------------------------------------------------------------------------------------------

    def open_voice_dialog(self) -> VoiceDialog:
        """Learn my voice: a non-modal window, kept while the app runs (closing it lets learning go on)."""
        from assistant.gui.voice_dialog import VoiceDialog

        if self.voice_dialog is None:
            self.voice_dialog = VoiceDialog(self.client, self.open_documents, self)
            self.voice_dialog.useVoice.connect(self.use_voice)
            self.voice_dialog.trainingEnded.connect(lambda message: self.statusBar().showMessage(message, 15000))
            self.editor_pane.editor.textChanged.connect(self.voice_dialog.documents_changed)
        if self.voice_dialog.isVisible():  # behind the window: bring it forward
            self.voice_dialog.raise_()
            self.voice_dialog.activateWindow()
        self.voice_dialog.show()
        return self.voice_dialog

    def open_documents(self) -> list[tuple[str, str]]:
        """The editor's document as it is now (unsaved edits included), to learn a voice from."""
        return [(self.editor_doc.display_name, self.editor_pane.editor.toPlainText())]

    def use_voice(self, name: str) -> None:
        """Write in the voice ``name`` ("" for none) from now on, and at the next start; the model is not reloaded."""
        self.settings.voice = name
        self._save_settings()
        self.client.set_voice(name)

    def _show_voice(self, info: ModelInfo) -> None:
        self._show_model_name(info)
        self.statusBar().showMessage(
            f"Writing in the voice '{info.voice}' now." if info.voice else "Writing without a voice now.", 8000
        )

    # --- settings ------------------------------------------------------------------------------------------

    def open_settings(self) -> None:
        from assistant.gui.dialogs.settings import SettingsDialog

        dialog = SettingsDialog(self.settings, self)
        if dialog.exec():
            self.change_settings(dialog.result_settings(), dialog.api_key_entered())

    def change_settings(self, new: AppSettings, api_key: str | None = None) -> None:
        """Apply and save new settings; a different model loads in the worker while the window stays usable.

        ``api_key`` (when the user typed one) goes to the key store for the new server, never to the settings file.
        """
        old_choice = self.model_choice()
        old_voice = self.settings.voice
        self.settings = new
        self.apply_settings(new)
        self._save_settings()
        if api_key is not None and new.remote_base_url.strip():
            from assistant.core.api_keys import default_key_store

            try:
                server = normalize_base_url(new.remote_base_url)
            except PenwrightError:
                server = new.remote_base_url.strip()
            self.statusBar().showMessage(default_key_store().set(server, api_key), 10000)
        choice = self.model_choice()
        if _without_voice(choice) != _without_voice(old_choice):
            self.client.load(choice)  # the new model loads with the chosen voice
        elif isinstance(choice, ModelChoice) and new.voice != old_voice:
            self.client.set_voice(new.voice)  # another voice on the same model: no reload
        self.settingsChanged.emit(new)

    def model_choice(self) -> BackendChoice:
        """The local model to load, or the server to use (with its key from the key store) when that is chosen."""
        settings = self.settings
        if settings.backend == "remote":
            from assistant.core.api_keys import default_key_store

            try:
                base_url = normalize_base_url(settings.remote_base_url)
            except PenwrightError:
                base_url = settings.remote_base_url.strip()  # connecting says what is wrong with it
            key = default_key_store().get(base_url)
            return RemoteChoice(base_url, key, settings.remote_model, float(settings.remote_timeout_s))
        return ModelChoice(settings.model, settings.device, settings.dtype, settings.quantize, voice=settings.voice)

    def apply_settings(self, settings: AppSettings) -> None:
        from PySide6.QtWidgets import QApplication

        app = QApplication.instance()
        dark = apply_theme(app, settings.theme) if isinstance(app, QApplication) else False
        for pane in self.panes:
            pane.apply_settings(settings)
        set_dark = getattr(self.code_pane, "set_dark", None)
        if callable(set_dark):
            set_dark(dark)
        self.autosave_timer.start(max(1, settings.autosave_seconds) * 1000)

    def _save_settings(self) -> None:
        # In place: the panes hold this same object (their toggles write to it).
        self.settings.window_geometry = bytes(self.saveGeometry().toBase64().data()).decode("ascii")
        try:
            save_settings(self.settings)
        except OSError as error:
            self.statusBar().showMessage(f"Settings could not be saved: {error.strerror or error}", 8000)

    # --- status --------------------------------------------------------------------------------------------

    def _show_state(self, state: str) -> None:
        labels = {
            "loading": "Loading model…",
            "ready": "Ready",
            "generating": "Writing…",
            "learning": "Learning your voice…",
            "error": "No model",
        }
        self.status_state.setText(labels.get(state, state))
        self.status_progress.setVisible(state in ("loading", "learning"))

    def _show_load_progress(self, stage: str) -> None:
        self.status_progress.setToolTip(stage)
        self.statusBar().showMessage(stage)

    def _show_model(self, info: ModelInfo) -> None:
        if isinstance(info, RemoteModelInfo):  # where the model runs, first
            self.status_model.setText(f"remote: {info.name} at {info.host}")
            self.status_model.setToolTip(f"{info.name} on the {info.server} server at {info.base_url}")
            self.statusBar().showMessage(f"Connected to {info.host}: {info.name}.", 5000)
            return
        self._show_model_name(info)
        note = f" {info.note}" if info.note else ""
        self.statusBar().showMessage(f"Model ready ({info.load_seconds:.1f} s).{note}", 8000 if note else 5000)

    def _show_model_name(self, info: ModelInfo) -> None:
        if isinstance(info, RemoteModelInfo):
            return
        weights = info.weights if info.weights and info.weights != info.dtype else ""
        voice = f"voice: {info.voice}" if info.voice else ""
        parts = (info.name, info.device, weights, info.dtype, voice)
        self.status_model.setText(" · ".join(part for part in parts if part))
        self.status_model.setToolTip(
            f"Writing in the voice '{info.voice}', learnt from your texts." if info.voice else ""
        )

    def _show_load_failure(self, message: str) -> None:
        self.statusBar().showMessage(message, 15000)
        if self.client.model_info is None:
            choice = self.model_choice()
            if isinstance(choice, RemoteChoice):
                self.status_model.setText(f"remote: not connected to {host_of(choice.base_url)}")
            else:
                self.status_model.setText("No model")
        if self.client.model_info is not None:
            self.prompter.notify("Model not loaded", f"{message}\n\nThe previous model is still in use.")
        else:
            self.prompter.notify("Model not loaded", f"{message}\n\nChoose another model in Settings.")

    def show_shortcuts(self) -> None:
        lines = []
        for menu_action in self.menuBar().actions():
            menu = menu_action.menu()
            if not isinstance(menu, QMenu):
                continue
            for action in menu.actions():
                if action.shortcut().toString():
                    lines.append(f"{action.text().replace('&', '')}: {action.shortcut().toString()}")
        self.prompter.warn("Keyboard shortcuts", "\n".join(lines))

    def show_about(self) -> None:
        from PySide6.QtWidgets import QMessageBox

        QMessageBox.about(
            self,
            "About Penwright",
            f"Penwright {__version__}\nA private, offline writing assistant. Your words never leave this computer, "
            "unless you choose a server in Settings (Where the model runs).",
        )

    # --- closing -------------------------------------------------------------------------------------------

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt's name)
        if not self._closing_confirmed:
            documents: list[tuple[DocumentController, Pane]] = [
                (self.editor_doc, self.editor_pane),
                (self.code_doc, self.code_pane),
            ]
            for document, pane in documents:
                if document.modified:
                    self.tabs.setCurrentWidget(pane)
                if not document.maybe_save():
                    event.ignore()
                    return
            training = self.client.training
            if training is not None and not self.prompter.confirm(
                "Stop learning your voice?",
                "Penwright is learning your voice. Quit now? Learning stops at its next step and the best voice so "
                "far is kept.",
            ):
                event.ignore()
                return
        if self.client.training is not None:
            self.client.training.stop()  # the worker saves the best so far before the app's thread ends
        self._closing_confirmed = True
        for pane in self.panes:
            pane.stop()
        self.chat_pane.shutdown()  # keeps a half-written answer and closes the chat database
        self.autosave_timer.stop()
        self.editor_doc.close_cleanly()
        self.code_doc.close_cleanly()
        self._save_settings()
        event.accept()


def _without_voice(choice: BackendChoice) -> BackendChoice:
    """The model choice apart from its voice: a voice alone changes without reloading the model."""
    return replace(choice, voice="") if isinstance(choice, ModelChoice) else choice
