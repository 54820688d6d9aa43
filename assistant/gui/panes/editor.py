"""The prose editor: plain text and Markdown, find/replace, live counts, story notes and the AI assists.

One rule keeps the assists predictable: this pane runs at most one model job, and starting another discards the
running one, so stale text never lands. Continue story writes straight into the document as ONE undo step; every
other assist writes into the result panel first, and the document changes only on Insert or Accept (again one
undo step each). Discard never touches the document, its undo stack or its modified flag.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QFont, QKeyEvent, QKeySequence, QTextCursor, QTextDocument
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from assistant.core.prompts import (
    POEM_FORMS,
    REWRITE_STYLES,
    PoemRequest,
    RewriteRequest,
    StoryRequest,
    SummaryRequest,
    TranslateRequest,
)
from assistant.core.settings import AppSettings
from assistant.gui.jobs import JobRunner
from assistant.gui.panes.base import Pane
from assistant.gui.panes.ghost_text import GhostTextController
from assistant.gui.preview_panel import PreviewPanel, TrackedRange
from assistant.gui.qt_text import plain_text_of
from assistant.gui.streamed_insertion import StreamedInsertion, insert_as_one_step
from assistant.gui.util import named
from assistant.gui.worker import AiClient

COUNT_DELAY_MS = 150
"""Counting waits for a pause in typing: a 20,000-word document is re-split at most a few times a second."""

COMMON_LANGUAGES = (
    "English", "Spanish", "French", "German", "Italian", "Portuguese", "Dutch", "Polish", "Swedish", "Danish",
    "Norwegian", "Finnish", "Czech", "Greek", "Russian", "Ukrainian", "Turkish", "Arabic", "Hebrew", "Hindi",
    "Chinese", "Japanese", "Korean", "Indonesian", "Vietnamese",
)  # fmt: skip

CUSTOM_STYLE = "custom"
KeyLike = str | QKeySequence | QKeySequence.StandardKey
"""What a shortcut may be given as."""


def count_words_and_characters(text: str) -> tuple[int, int]:
    """Words split on whitespace; characters include spaces but not line breaks, as word processors count."""
    return len(text.split()), len(text) - text.count("\n")


def format_counts(words: int, characters: int, selected: bool) -> str:
    word_label = "word" if words == 1 else "words"
    character_label = "character" if characters == 1 else "characters"
    counts = f"{words:,} {word_label} · {characters:,} {character_label}"
    return f"{counts} selected" if selected else counts


def _leading_whitespace(text: str) -> str:
    return text[: len(text) - len(text.lstrip())]


def _trailing_whitespace(text: str) -> str:
    return text[len(text.rstrip()) :]


# --- find and replace ------------------------------------------------------------------------------------------


class FindBar(QWidget):
    """Find and replace in one plain-text editor; Replace all is a single undo step.

    Esc inside the bar closes it (and is used up there, so the main window does not read it as Stop).

    Signals:
        closed(): the bar was hidden; the editor has the focus back.
    """

    closed = Signal()

    def __init__(self, editor: QPlainTextEdit, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("findBar")
        self._editor = editor
        self.find_input = named(QLineEdit(), "findInput")
        self.find_input.setPlaceholderText("Find")
        self.find_input.setClearButtonEnabled(True)
        self.replace_input = named(QLineEdit(), "replaceInput")
        self.replace_input.setPlaceholderText("Replace with")
        self.case_sensitive = named(QCheckBox("Match case"), "findCaseSensitive")
        self.previous_button = named(QPushButton("Previous"), "findPrevious", "Previous match (Shift+Enter)")
        self.next_button = named(QPushButton("Next"), "findNext", "Next match (Enter)")
        self.replace_button = named(QPushButton("Replace"), "replaceOne")
        self.replace_all_button = named(
            QPushButton("Replace all"), "replaceAll", "Replace every match (one undo step)"
        )
        self.status_label = named(QLabel(), "findStatus")
        close_button = named(QToolButton(), "findClose", "Close (Esc)")
        close_button.setText("✕")
        close_button.setAutoRaise(True)

        layout = QGridLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.addWidget(self.find_input, 0, 0)
        layout.addWidget(self.previous_button, 0, 1)
        layout.addWidget(self.next_button, 0, 2)
        layout.addWidget(self.case_sensitive, 0, 3)
        layout.addWidget(self.status_label, 0, 4)
        layout.addWidget(close_button, 0, 5)
        layout.addWidget(self.replace_input, 1, 0)
        layout.addWidget(self.replace_button, 1, 1)
        layout.addWidget(self.replace_all_button, 1, 2)
        layout.setColumnStretch(0, 1)
        self._replace_row: list[QWidget] = [self.replace_input, self.replace_button, self.replace_all_button]

        self.find_input.returnPressed.connect(self.find_next)
        self.replace_input.returnPressed.connect(self.replace_current)
        self.next_button.clicked.connect(self.find_next)
        self.previous_button.clicked.connect(self.find_previous)
        self.replace_button.clicked.connect(self.replace_current)
        self.replace_all_button.clicked.connect(self.replace_all)
        self.find_input.textChanged.connect(lambda _text: self.status_label.clear())
        close_button.clicked.connect(self.close_bar)
        for child in (self.find_input, self.replace_input, self.case_sensitive):
            child.installEventFilter(self)
        self.hide()

    def open_bar(self, with_replace: bool) -> None:
        """Show the bar with the selection (when it is one line) as the search text, ready to type."""
        for widget in self._replace_row:
            widget.setVisible(with_replace)
        selected = self._editor.textCursor().selectedText()
        if selected and "\u2029" not in selected:
            self.find_input.setText(selected)
        self.status_label.clear()
        self.show()
        self.find_input.setFocus()
        self.find_input.selectAll()

    def close_bar(self) -> None:
        self.hide()
        self._editor.setFocus()
        self.closed.emit()

    @property
    def replace_visible(self) -> bool:
        return not self.replace_input.isHidden()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        """Esc closes the bar; Shift+Enter in the search field goes to the previous match."""
        if event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent):
            if event.key() == Qt.Key.Key_Escape:
                self.close_bar()
                return True
            shifted = event.modifiers() & Qt.KeyboardModifier.ShiftModifier
            if watched is self.find_input and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and shifted:
                self.find_previous()
                return True
        return super().eventFilter(watched, event)

    def _flags(self, backward: bool = False) -> QTextDocument.FindFlag:
        flags = QTextDocument.FindFlag(0)
        if self.case_sensitive.isChecked():
            flags |= QTextDocument.FindFlag.FindCaseSensitively
        if backward:
            flags |= QTextDocument.FindFlag.FindBackward
        return flags

    def find_next(self) -> bool:
        return self._find(backward=False)

    def find_previous(self) -> bool:
        return self._find(backward=True)

    def _find(self, backward: bool) -> bool:
        """Select the next match, wrapping around the document once; say so when there is none."""
        needle = self.find_input.text()
        if not needle:
            return False
        flags = self._flags(backward)
        if self._editor.find(needle, flags):
            self.status_label.clear()
            return True
        before_wrap = self._editor.textCursor()
        wrapped = QTextCursor(before_wrap)
        wrapped.movePosition(QTextCursor.MoveOperation.End if backward else QTextCursor.MoveOperation.Start)
        self._editor.setTextCursor(wrapped)
        if self._editor.find(needle, flags):
            self.status_label.setText("Wrapped around")
            return True
        self._editor.setTextCursor(before_wrap)
        self.status_label.setText("No matches")
        return False

    def _selection_is_match(self) -> bool:
        selected = self._editor.textCursor().selectedText()
        needle = self.find_input.text()
        if self.case_sensitive.isChecked():
            return selected == needle
        return selected.casefold() == needle.casefold()

    def replace_current(self) -> bool:
        """Replace the selected match (if the selection is one), then move to the next match."""
        if self.find_input.text() and self._selection_is_match():
            cursor = self._editor.textCursor()
            cursor.insertText(self.replace_input.text())
            self._editor.setTextCursor(cursor)
        return self.find_next()

    def replace_all(self) -> int:
        """Replace every match as ONE undo step; returns how many were replaced."""
        needle = self.find_input.text()
        if not needle:
            return 0
        document = self._editor.document()
        replacement = self.replace_input.text()
        flags = self._flags()
        match = document.find(needle, 0, flags)
        if match.isNull():
            self.status_label.setText("No matches")
            return 0
        edit_block = QTextCursor(document)
        edit_block.beginEditBlock()  # started only once there is a change, so "no matches" adds no undo step
        replaced = 0
        while not match.isNull():
            match.insertText(replacement)
            replaced += 1
            match = document.find(needle, match, flags)
        edit_block.endEditBlock()
        self.status_label.setText(f"Replaced {replaced:,}")
        return replaced


# --- dialogs ---------------------------------------------------------------------------------------------------


def _ok_cancel(dialog: QDialog, ok_text: str) -> QDialogButtonBox:
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
    buttons.button(QDialogButtonBox.StandardButton.Ok).setText(ok_text)
    buttons.accepted.connect(dialog.accept)
    buttons.rejected.connect(dialog.reject)
    return buttons


class PoemDialog(QDialog):
    """Theme, form and style of a poem; the form list is editable so any form can be asked for."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("poemDialog")
        self.setWindowTitle("Write a poem")
        self.theme_input = named(QLineEdit(), "poemTheme")
        self.theme_input.setPlaceholderText("e.g. the first snow in the city")
        self.form_input = named(QComboBox(), "poemForm")
        self.form_input.setEditable(True)
        self.form_input.addItems(list(POEM_FORMS))
        self.style_input = named(QLineEdit(), "poemStyle")
        self.style_input.setPlaceholderText("optional, e.g. wistful, plain words")
        self.buttons = _ok_cancel(self, "Write")
        form = QFormLayout(self)
        form.addRow("Theme:", self.theme_input)
        form.addRow("Form:", self.form_input)
        form.addRow("Style:", self.style_input)
        form.addRow(self.buttons)
        self.theme_input.textChanged.connect(self._update_ok)
        self._update_ok()

    def _update_ok(self) -> None:
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(bool(self.theme_input.text().strip()))

    def request(self) -> PoemRequest:
        return PoemRequest(
            theme=self.theme_input.text().strip(),
            form=self.form_input.currentText().strip() or "free verse",
            style=self.style_input.text().strip(),
        )


class RewriteDialog(QDialog):
    """How to rewrite the selection: a named style, or "custom" with the user's own instruction."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("rewriteDialog")
        self.setWindowTitle("Rewrite the selection")
        self.style_input = named(QComboBox(), "rewriteStyle")
        self.style_input.addItems([*REWRITE_STYLES, CUSTOM_STYLE])
        self.instruction_input = named(QLineEdit(), "rewriteInstruction")
        self.buttons = _ok_cancel(self, "Rewrite")
        form = QFormLayout(self)
        form.addRow("Make it:", self.style_input)
        form.addRow("Instruction:", self.instruction_input)
        form.addRow(self.buttons)
        self.style_input.currentTextChanged.connect(self._update_state)
        self.instruction_input.textChanged.connect(self._update_state)
        self._update_state()

    def _update_state(self) -> None:
        custom = self.style_input.currentText() == CUSTOM_STYLE
        self.instruction_input.setPlaceholderText(
            "required, e.g. in the past tense" if custom else "optional, added to the style"
        )
        ready = not custom or bool(self.instruction_input.text().strip())
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(ready)

    def choice(self) -> tuple[str, str]:
        """(style, instruction) as RewriteRequest takes them."""
        return self.style_input.currentText(), self.instruction_input.text().strip()


class TranslateDialog(QDialog):
    """The target language: common ones listed, any other can be typed."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("translateDialog")
        self.setWindowTitle("Translate the selection")
        self.language_input = named(QComboBox(), "translateLanguage")
        self.language_input.setEditable(True)
        self.language_input.addItems(list(COMMON_LANGUAGES))
        self.buttons = _ok_cancel(self, "Translate")
        form = QFormLayout(self)
        form.addRow("Into:", self.language_input)
        form.addRow(self.buttons)
        self.language_input.currentTextChanged.connect(
            lambda text: self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(bool(text.strip()))
        )

    def language(self) -> str:
        return self.language_input.currentText().strip()


# --- the pane --------------------------------------------------------------------------------------------------


class EditorPane(Pane):
    """The prose editor with story notes and the writing assists.

    Signals:
        metadataChanged(): the story memory or author's note was edited (the main window saves them).
        busyChanged(busy): a model job of this pane started (True) or ended (False).
        statusMessage(text): inherited; progress, errors and hints for the status bar.
    """

    metadataChanged = Signal()
    busyChanged = Signal(bool)
    menu_title = "Assist"

    def __init__(self, client: AiClient, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(client, settings, parent)
        self.setObjectName("editorPane")
        self._jobs = JobRunner(client, self)
        self._story: StreamedInsertion | None = None
        """Where a running continuation writes (None while the job writes into the result panel)."""
        self._strip_leading_space = False
        self._selection: TrackedRange | None = None
        """What Accept replaces: the selection a rewrite or translation was made from."""
        self._loading_metadata = False
        self._document_length = 1

        self._editor = named(QPlainTextEdit(), "editor")
        self._editor.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self._editor.setPlaceholderText("Write here. Ctrl+Return continues the story from the cursor.")
        self.ghost = GhostTextController(
            self._editor, client, mode="prose", pane="editor", enabled=settings.suggest_in_editor, parent=self
        )
        self.ghost.message.connect(self._say)
        self.find_bar = FindBar(self._editor, self)
        self.result_panel = PreviewPanel("result", parent=self)
        self._build_story_notes()
        self._build_bottom_bar()
        self._build_layout()
        self._build_actions()

        self._counts_timer = QTimer(self, singleShot=True, interval=COUNT_DELAY_MS)
        self._counts_timer.timeout.connect(self.update_counts)
        self._editor.textChanged.connect(self._counts_timer.start)
        self._editor.selectionChanged.connect(self._counts_timer.start)
        self._editor.document().contentsChange.connect(self._on_contents_change)
        self.result_panel.insertRequested.connect(self.insert_result)
        self.result_panel.acceptRequested.connect(self.accept_result)
        self.result_panel.discardRequested.connect(self.discard_result)
        self._jobs.textArrived.connect(self._on_job_text)
        self._jobs.progress.connect(self._on_job_progress)
        self._jobs.finished.connect(self._on_job_finished)
        self._jobs.failed.connect(self._on_job_failed)
        self._jobs.busyChanged.connect(self.stop_button.setEnabled)
        self._jobs.busyChanged.connect(self.busyChanged)
        self.apply_settings(settings)
        self.update_counts()

    # --- construction --------------------------------------------------------------------------------------

    def _build_story_notes(self) -> None:
        self.story_notes = named(QWidget(), "storyNotes")
        self.memory_input = named(QPlainTextEdit(), "storyMemory")
        self.memory_input.setPlaceholderText("Always remembered: characters, setting, tone.")
        self.authors_note_input = named(QPlainTextEdit(), "authorsNote")
        self.authors_note_input.setPlaceholderText("Steers the next lines, e.g. Tense; Mara hides the letter.")
        self.authors_note_input.setMaximumHeight(90)
        layout = QVBoxLayout(self.story_notes)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Story memory"))
        layout.addWidget(self.memory_input, 1)
        layout.addWidget(QLabel("Author's note"))
        layout.addWidget(self.authors_note_input)
        self.story_notes.hide()
        self.memory_input.textChanged.connect(self._on_metadata_edited)
        self.authors_note_input.textChanged.connect(self._on_metadata_edited)

    def _build_bottom_bar(self) -> None:
        self.notes_toggle = named(QToolButton(), "storyNotesToggle")
        self.notes_toggle.setText("Story notes")
        self.notes_toggle.setCheckable(True)
        self.notes_toggle.setToolTip("Show the story memory and author's note used by Continue story")
        self.notes_toggle.setAutoRaise(True)
        self.notes_toggle.toggled.connect(self._show_story_notes)
        self.assist_status = named(QLabel(), "assistStatus")
        self.stop_button = named(QPushButton("Stop"), "editorStop", "Stop writing (Esc)")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        self.counts_label = named(QLabel(), "editorCounts")

    def _build_layout(self) -> None:
        self.side_panel = named(QWidget(), "editorSidePanel")
        side_layout = QVBoxLayout(self.side_panel)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.addWidget(self.story_notes, 1)
        side_layout.addWidget(self.result_panel, 2)
        self.side_panel.hide()

        editor_column = QWidget()
        editor_layout = QVBoxLayout(editor_column)
        editor_layout.setContentsMargins(0, 0, 0, 0)
        editor_layout.setSpacing(2)
        editor_layout.addWidget(self._editor, 1)
        editor_layout.addWidget(self.find_bar)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(editor_column)
        self.splitter.addWidget(self.side_panel)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setChildrenCollapsible(False)

        bottom = QHBoxLayout()
        bottom.setContentsMargins(4, 0, 4, 0)
        bottom.addWidget(self.notes_toggle)
        bottom.addWidget(self.assist_status, 1)
        bottom.addWidget(self.stop_button)
        bottom.addWidget(self.counts_label)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.splitter, 1)
        layout.addLayout(bottom)

    def _action(self, text: str, shortcut: KeyLike, tip: str, toolbar: bool = True) -> QAction:
        """An action with its shortcut in the tooltip; ``toolbar=False`` keeps it in the menu only."""
        action = QAction(text, self)
        sequence = QKeySequence(shortcut)
        action.setShortcut(sequence)
        action.setToolTip(f"{tip} ({sequence.toString(QKeySequence.SequenceFormat.NativeText)})")
        if not toolbar:
            action.setProperty("toolbar", False)  # the main window keeps these out of its toolbar
        self.addAction(action)  # shortcuts work even when the pane is used without the main window's menus
        return action

    def _build_actions(self) -> None:
        self.continue_action = self._action("Continue story", "Ctrl+Return", "Continue the story from the cursor")
        self.poem_action = self._action("Write poem…", "Ctrl+Shift+P", "Write a poem into the result panel")
        self.summarize_action = self._action("Summarize", "Ctrl+Shift+M", "Summarize the selection or document")
        self.rewrite_action = self._action("Rewrite…", "Ctrl+Shift+R", "Rewrite the selection")
        self.translate_action = self._action("Translate…", "Ctrl+Shift+T", "Translate the selection")
        self.find_action = self._action("Find…", QKeySequence.StandardKey.Find, "Find text", toolbar=False)
        self.replace_action = self._action("Replace…", "Ctrl+H", "Find and replace text", toolbar=False)
        self.undo_action = self._action("Undo", QKeySequence.StandardKey.Undo, "Undo", toolbar=False)
        self.redo_action = self._action("Redo", "Ctrl+Shift+Z", "Redo", toolbar=False)
        self.redo_action.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.addActions([self.ghost.auto_action, self.ghost.suggest_action])
        self.ghost.auto_action.toggled.connect(self._remember_auto_suggest)

        self.continue_action.triggered.connect(self.continue_story)
        self.poem_action.triggered.connect(self.open_poem_dialog)
        self.summarize_action.triggered.connect(self.summarize)
        self.rewrite_action.triggered.connect(self.open_rewrite_dialog)
        self.translate_action.triggered.connect(self.open_translate_dialog)
        self.find_action.triggered.connect(lambda: self.find_bar.open_bar(with_replace=False))
        self.replace_action.triggered.connect(lambda: self.find_bar.open_bar(with_replace=True))
        self.undo_action.triggered.connect(self._editor.undo)
        self.redo_action.triggered.connect(self._editor.redo)

        self.poem_dialog = PoemDialog(self)
        self.poem_dialog.accepted.connect(lambda: self.write_poem(self.poem_dialog.request()))
        self.rewrite_dialog = RewriteDialog(self)
        self.rewrite_dialog.accepted.connect(lambda: self.rewrite_selection(*self.rewrite_dialog.choice()))
        self.translate_dialog = TranslateDialog(self)
        self.translate_dialog.accepted.connect(lambda: self.translate_selection(self.translate_dialog.language()))

    # --- public API ----------------------------------------------------------------------------------------

    @property
    def editor(self) -> QPlainTextEdit:
        return self._editor

    @property
    def busy(self) -> bool:
        return self._jobs.busy

    def pane_actions(self) -> list[QAction]:
        return [
            self.continue_action,
            self.poem_action,
            self.summarize_action,
            self.rewrite_action,
            self.translate_action,
            self.ghost.suggest_action,
            self.ghost.auto_action,
            self.find_action,
            self.replace_action,
            self.undo_action,
            self.redo_action,
        ]

    def apply_settings(self, settings: AppSettings) -> None:
        super().apply_settings(settings)
        self.ghost.auto_action.setChecked(settings.suggest_in_editor)
        family = settings.editor_font_family
        font = QFont(family) if family else QFont(QApplication.font())
        font.setPointSize(max(6, int(settings.editor_font_size)))
        self._editor.setFont(font)

    def _remember_auto_suggest(self, enabled: bool) -> None:
        """The menu toggle is the setting: the main window saves it with the others."""
        self.settings.suggest_in_editor = enabled

    def story_metadata(self) -> dict[str, str]:
        return {"memory": self.memory_input.toPlainText(), "authors_note": self.authors_note_input.toPlainText()}

    def set_story_metadata(self, metadata: dict[str, Any]) -> None:
        """Load a document's notes without reporting them as edits; show the notes when there are some."""
        memory = str(metadata.get("memory") or "")
        note = str(metadata.get("authors_note") or "")
        self._loading_metadata = True
        try:
            self.memory_input.setPlainText(memory)
            self.authors_note_input.setPlainText(note)
        finally:
            self._loading_metadata = False
        if memory.strip() or note.strip():
            self.notes_toggle.setChecked(True)

    def update_counts(self) -> None:
        """Words and characters of the selection, or of the whole document when nothing is selected."""
        cursor = self._editor.textCursor()
        selected = cursor.hasSelection()
        text = plain_text_of(cursor) if selected else self._editor.toPlainText()
        self.counts_label.setText(format_counts(*count_words_and_characters(text), selected=selected))

    def stop(self) -> None:
        """Stop the running job; what it wrote so far stays (in the document or the result panel)."""
        if self._jobs.stop():
            self._say("Stopping…")

    # --- assists -------------------------------------------------------------------------------------------

    def continue_story(self) -> None:
        """Continue from the cursor: the text before it, plus memory and author's note, streams in at the cursor."""
        cursor = self._editor.textCursor()
        position = cursor.selectionEnd()
        story = self._editor.toPlainText()[:position]
        metadata = self.story_metadata()
        if not story.strip() and not metadata["memory"].strip():
            self._say("Write a line or two first (or add story memory), so there is something to continue.")
            return
        cursor.setPosition(position)
        self._editor.setTextCursor(cursor)
        request = StoryRequest(story=story, memory=metadata["memory"], authors_note=metadata["authors_note"])
        self._start(request, story=StreamedInsertion(self._editor, position))
        self._strip_leading_space = not story or story[-1].isspace()
        self._say("Continuing the story…")

    def open_poem_dialog(self) -> None:
        self.poem_dialog.open()
        self.poem_dialog.theme_input.setFocus()

    def write_poem(self, request: PoemRequest) -> None:
        if not request.theme.strip():
            self._say("Give the poem a theme first.")
            return
        self.result_panel.begin(f"Poem ({request.form})", "Writing…", can_accept=False)
        self._start(request)

    def summarize(self) -> None:
        """Summarize the selection, or the whole document when nothing is selected."""
        cursor = self._editor.textCursor()
        of_selection = cursor.hasSelection()
        text = plain_text_of(cursor) if of_selection else self._editor.toPlainText()
        if not text.strip():
            self._say("There is nothing to summarize yet.")
            return
        title = "Summary of the selection" if of_selection else "Summary of the document"
        self.result_panel.begin(title, "Summarizing…", can_accept=False)
        self._start(SummaryRequest(text))

    def open_rewrite_dialog(self) -> None:
        if self._require_selection("rewrite"):
            self.rewrite_dialog.open()

    def rewrite_selection(self, style: str, instruction: str = "") -> None:
        """Rewrite the selection into the result panel; Accept later replaces exactly that text."""
        if style == CUSTOM_STYLE and not instruction.strip():
            self._say("Say how to rewrite the text (for example: in the past tense).")
            return
        if not self._require_selection("rewrite"):
            return
        selection = self._track_selection()
        title = f"Rewrite: {instruction}" if style == CUSTOM_STYLE else f"Rewrite: {style}"
        self.result_panel.begin(title, "Rewriting…", can_accept=True)
        self._start(RewriteRequest(text=selection.original, style=style, instruction=instruction), selection=selection)

    def open_translate_dialog(self) -> None:
        if self._require_selection("translate"):
            self.translate_dialog.open()

    def translate_selection(self, language: str) -> None:
        if not language.strip():
            self._say("Choose the language to translate into.")
            return
        if not self._require_selection("translate"):
            return
        selection = self._track_selection()
        self.result_panel.begin(f"Translation into {language}", "Translating…", can_accept=True)
        self._start(TranslateRequest(text=selection.original, language=language.strip()), selection=selection)

    # --- result panel actions ------------------------------------------------------------------------------

    @property
    def result_text(self) -> str:
        return self.result_panel.text

    def insert_result(self) -> None:
        """Insert the result at the cursor (keeping any selection's text) as one undo step."""
        text = self.result_panel.text.strip()
        if not text or self.result_panel.running:
            return
        insert_as_one_step(self._editor, text)
        self.result_panel.set_status("Inserted at the cursor.")
        self._editor.setFocus()

    def accept_result(self) -> None:
        """Replace the original selection, wherever it is now, as one undo step; refuse if it was edited."""
        selection = self._selection
        text = self.result_panel.text.strip()
        if selection is None or not text or self.result_panel.running:
            return
        original = selection.original
        target = selection.replace(_leading_whitespace(original) + text + _trailing_whitespace(original))
        if target is None:
            message = "The original text changed meanwhile, so it was not replaced. Copy or insert the result instead."
            self.result_panel.set_status(message)
            self._say(message)
            return
        self._editor.setTextCursor(target)
        self._selection = None
        self.result_panel.close_panel()
        self._sync_side_panel()
        self._say("Replaced the selection.")
        self._editor.setFocus()

    def discard_result(self) -> None:
        """Drop the result (stopping it if it is still being written); the document is not touched."""
        if self._jobs.busy and self._story is None:
            self._drop_job()
        self._selection = None
        self.result_panel.close_panel()
        self._sync_side_panel()
        self._editor.setFocus()

    # --- jobs ----------------------------------------------------------------------------------------------

    def _start(
        self,
        request: object,
        story: StreamedInsertion | None = None,
        selection: TrackedRange | None = None,
    ) -> None:
        """Run ``request`` as this pane's only job; a running one is discarded first so its text never lands."""
        with self._jobs.replacing():  # busy throughout: no False/True flicker
            self._drop_job(keep_panel=story is None)
            self._story = story
            if story is None:  # a continuation leaves a finished rewrite waiting for Accept alone
                self._selection = selection
                self._sync_side_panel()
            self._jobs.start(request, self.settings.sampler)

    def _drop_job(self, keep_panel: bool = False) -> None:
        """Discard the running job: nothing it still writes reaches the document or the panel."""
        if not self._jobs.busy:
            return
        was_story = self._story is not None
        self._jobs.discard()
        self._story = None
        if not was_story and not keep_panel:
            self._selection = None
            self.result_panel.close_panel()
            self._sync_side_panel()

    def _on_job_text(self, text: str) -> None:
        if self._story is not None:
            self._insert_story_text(text)
        else:
            self.result_panel.append(text)

    def _insert_story_text(self, text: str) -> None:
        """Write a batch at the end of the continuation, all of it one undo step."""
        story = self._story
        assert story is not None
        if self._strip_leading_space:
            text = text.lstrip(" \t")
            if not text:
                return
            self._strip_leading_space = False
        if not story.append(text):
            self._drop_job()  # the continuation was undone: stop adding to it
            self._say("Stopped continuing: the new text was undone.")

    def _on_job_progress(self, stage: str) -> None:
        if self._story is None:
            self.result_panel.set_status(stage)
        self._say(stage)

    def _on_job_finished(self, stats: dict[str, Any]) -> None:
        """The job ended (the runner says busy False right after, so listeners see the final status)."""
        cancelled = stats.get("finish_reason") == "cancelled"
        was_story, self._story = self._story is not None, None
        if not was_story:
            if not self.result_panel.text.strip():
                status = "Stopped before any text." if cancelled else "The model wrote nothing; try again."
            elif cancelled:
                verb = "Accept" if self._selection is not None else "Insert"
                status = f"Stopped. {verb} what is there, or discard it."
            else:
                status = "Done."
            self.result_panel.finish(status)
        self._say("Stopped." if cancelled else "")

    def _on_job_failed(self, message: str) -> None:
        was_story, self._story = self._story is not None, None
        if not was_story:
            self.result_panel.finish(message)
        self._say(message)

    def _on_contents_change(self, position: int, removed: int, added: int) -> None:
        """A continuation must not write into a document that was replaced (opened, new) or cleared meanwhile."""
        length_before = self._document_length
        self._document_length = self._editor.document().characterCount()
        everything_removed = position == 0 and length_before > 1 and removed >= length_before - 1
        if everything_removed and self._story is not None:
            self._drop_job()
            self._say("Stopped continuing: the document was replaced.")

    # --- helpers -------------------------------------------------------------------------------------------

    def _say(self, message: str) -> None:
        self.assist_status.setText(message)
        if message:
            self.statusMessage.emit(message)

    def _require_selection(self, verb: str) -> bool:
        if plain_text_of(self._editor.textCursor()).strip():
            return True
        self._say(f"Select the text to {verb} first.")
        return False

    def _track_selection(self) -> TrackedRange:
        return TrackedRange.of_selection(self._editor.textCursor())

    def _show_story_notes(self, shown: bool) -> None:
        self.story_notes.setVisible(shown)
        self._sync_side_panel()

    def _sync_side_panel(self) -> None:
        """The side column shows only while it has something in it (notes or a result)."""
        self.side_panel.setVisible(not self.story_notes.isHidden() or not self.result_panel.isHidden())

    def _on_metadata_edited(self) -> None:
        if not self._loading_metadata:
            self.metadataChanged.emit()
