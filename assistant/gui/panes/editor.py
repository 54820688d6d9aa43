"""The prose editor pane: the text, live counts, story notes and the AI assists (find/replace is ``find_bar.py``,
the assists' dialogs ``dialogs/writing_assists.py``, their results show in ``preview_panel.py``).

One rule keeps the assists predictable: this pane runs at most one model job, and starting another discards the
running one, so stale text never lands. Continue story writes straight into the document as ONE undo step; every
other assist writes into the result panel first, and the document changes only on Insert or Accept (again one
undo step each). Discard never touches the document, its undo stack or its modified flag.

Summarize with nothing selected, on a document of several parts (chapters, scenes), writes a synopsis into its own
side panel (``synopsis_panel.py``): each part's heading is a link to the part, and the panel stays until closed.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QFont, QKeySequence, QTextCursor
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from assistant.core.document_parts import Part, split_document
from assistant.core.prompts import (
    PoemRequest,
    RewriteRequest,
    StoryRequest,
    SummaryRequest,
    TranslateRequest,
)
from assistant.core.settings import AppSettings
from assistant.gui.dialogs.writing_assists import CUSTOM_STYLE, PoemDialog, RewriteDialog, TranslateDialog
from assistant.gui.jobs import JobRunner
from assistant.gui.panes.base import Pane
from assistant.gui.panes.find_bar import FindBar
from assistant.gui.panes.ghost_text import GhostTextController
from assistant.gui.preview_panel import PreviewPanel, TrackedRange
from assistant.gui.qt_text import plain_text_of, utf16_length
from assistant.gui.streamed_insertion import StreamedInsertion, insert_as_one_step
from assistant.gui.synopsis_panel import SynopsisPanel, SynopsisReader, locate_part, stage_label
from assistant.gui.util import named
from assistant.gui.worker import AiClient

COUNT_DELAY_MS = 150
"""Counting waits for a pause in typing: a 20,000-word document is re-split at most a few times a second."""

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
        self._synopsis_reader: SynopsisReader | None = None
        """Reads the running synopsis job's text (None when the job, if any, is another assist)."""
        self._synopsis_source: str | None = None
        """The document text the synopsis in the panel was made from (its parts' offsets point into it)."""

        self._editor = named(QPlainTextEdit(), "editor")
        self._editor.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self._editor.setPlaceholderText("Write here. Ctrl+Return continues the story from the cursor.")
        self.ghost = GhostTextController(
            self._editor, client, mode="prose", pane="editor", enabled=settings.suggest_in_editor, parent=self
        )
        self.ghost.message.connect(self._say)
        self.find_bar = FindBar(self._editor, self)
        self.result_panel = PreviewPanel("result", parent=self)
        self.synopsis_panel = SynopsisPanel(self)
        self._build_story_notes()
        self._build_bottom_bar()
        self._build_layout()
        self._build_actions()

        self._counts_timer = QTimer(self, singleShot=True, interval=COUNT_DELAY_MS)
        self._counts_timer.timeout.connect(self.update_counts)
        self._counts_timer.timeout.connect(self._check_synopsis_current)
        self._editor.textChanged.connect(self._counts_timer.start)
        self._editor.selectionChanged.connect(self._counts_timer.start)
        self._editor.document().contentsChange.connect(self._on_contents_change)
        self.result_panel.insertRequested.connect(self.insert_result)
        self.result_panel.acceptRequested.connect(self.accept_result)
        self.result_panel.discardRequested.connect(self.discard_result)
        self.synopsis_panel.partClicked.connect(self.go_to_part)
        self.synopsis_panel.closeRequested.connect(lambda: self.show_synopsis_panel(False))
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
        side_layout.addWidget(self.synopsis_panel, 2)
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
        self.synopsis_action = self._action(
            "Synopsis panel", "Ctrl+Shift+Y", "Show or hide the synopsis of the document", toolbar=False
        )
        self.synopsis_action.setCheckable(True)
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
        self.synopsis_action.toggled.connect(self.show_synopsis_panel)
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
            self.synopsis_action,
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
        """Summarize the selection, or the whole document when nothing is selected.

        A whole document of several parts (chapters, scenes, or the even chunks of a long text) gets a synopsis in
        its own panel; a selection, or a document of one part, gets one summary in the result panel.
        """
        cursor = self._editor.textCursor()
        document = self._editor.toPlainText()
        of_selection = cursor.hasSelection() and plain_text_of(cursor) != document  # Select All is the document
        text = plain_text_of(cursor) if of_selection else document
        if not text.strip():
            self._say("There is nothing to summarize yet.")
            return
        if not of_selection:
            parts = split_document(document)
            if len(parts) > 1 and not all(part.is_empty for part in parts):
                self.summarize_document(document, parts)
                return
        title = "Summary of the selection" if of_selection else "Summary of the document"
        self.result_panel.begin(title, "Summarizing…", can_accept=False)
        self._start(SummaryRequest(text))

    def summarize_document(self, document: str, parts: list[Part]) -> None:
        """The synopsis of ``document`` (split into ``parts``), part by part into the synopsis panel.

        It runs as this pane's one job like any assist; Stop keeps the parts already done.
        """
        with self._jobs.replacing():
            self._drop_job()
            self._story = None
            self._selection = None
            self.result_panel.close_panel()  # the synopsis is the answer now: no older result waits beside it
            self._synopsis_reader = SynopsisReader(parts)
            self._synopsis_source = document
            self.synopsis_panel.begin(len(parts))
            self.show_synopsis_panel(True)
            self._jobs.start(SummaryRequest(document, form="synopsis"), self.settings.sampler)
        self._say(f"Summarizing {len(parts)} parts…")

    def show_synopsis_panel(self, shown: bool) -> None:
        """Open or close the synopsis panel (the menu toggle and the panel's Close button); closing keeps it."""
        self.synopsis_panel.setVisible(shown)
        if self.synopsis_action.isChecked() != shown:
            self.synopsis_action.setChecked(shown)
        self._sync_side_panel()

    def go_to_part(self, index: int) -> None:
        """Put the cursor at the start of the synopsis's part ``index`` (its heading), scrolled to the top.

        The part's offset is a Python index into the text the synopsis was made from; Qt counts UTF-16 units (an
        emoji is two). If the document changed since, the part's heading is found again (``locate_part``); if it
        cannot be found for sure, nothing moves and the panel says the synopsis is out of date.
        """
        parts = self.synopsis_panel.synopsis.parts
        if self._synopsis_source is None or not 0 <= index < len(parts):
            return
        part = parts[index]
        current = self._editor.toPlainText()
        offset = locate_part(self._synopsis_source, current, part.start)
        if offset is None:
            message = (
                f"“{part.title}” is not where the synopsis found it: the document changed since. "
                "Summarize again to update the synopsis."
            )
            self.synopsis_panel.set_status(message)
            self.synopsis_panel.set_stale(True)
            self._say(message)
            return
        position = utf16_length(current[:offset])
        scroll_bar = self._editor.verticalScrollBar()
        scroll_bar.setValue(scroll_bar.maximum())  # scrolling up to the cursor puts its line at the top
        cursor = QTextCursor(self._editor.document())
        cursor.setPosition(position)
        self._editor.setTextCursor(cursor)
        self._editor.ensureCursorVisible()
        self._editor.setFocus()
        changed = " (the document changed since the synopsis was made)" if current != self._synopsis_source else ""
        self._say(f"At “{part.title}”{changed}.")

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
        if self._synopsis_reader is not None:
            self._end_synopsis("stopped", "Stopped for another assist")
        if not was_story and not keep_panel:
            self._selection = None
            self.result_panel.close_panel()
            self._sync_side_panel()

    def _on_job_text(self, text: str) -> None:
        if self._synopsis_reader is not None:
            if self._synopsis_reader.feed(text) or self._synopsis_reader.synopsis.overall:
                self.synopsis_panel.show_synopsis(self._synopsis_reader.synopsis)
        elif self._story is not None:
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
        if self._synopsis_reader is not None:
            self.synopsis_panel.set_status(stage_label(stage))
        elif self._story is None:
            self.result_panel.set_status(stage)
        self._say(stage)

    def _on_job_finished(self, stats: dict[str, Any]) -> None:
        """The job ended (the runner says busy False right after, so listeners see the final status)."""
        cancelled = stats.get("finish_reason") == "cancelled"
        if self._synopsis_reader is not None:
            self._end_synopsis("stopped" if cancelled else "done")
            self._say("Stopped." if cancelled else "")
            return
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
        if self._synopsis_reader is not None:
            self._end_synopsis("failed", message)
            self._say(message)
            return
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

    def _end_synopsis(self, how: str, message: str = "Stopped") -> None:
        """The synopsis job is over (``how``: "done", "stopped" or "failed"): show what it finished and say so.

        Stop, another assist and a failure all keep the parts already done.
        """
        reader, self._synopsis_reader = self._synopsis_reader, None
        assert reader is not None
        reader.finish()
        synopsis = reader.synopsis
        if how == "done" and not synopsis.parts and not synopsis.overall and reader.text.strip():
            synopsis.overall = reader.text.strip()  # not in the expected form: show the text rather than lose it
        self.synopsis_panel.show_synopsis(synopsis)
        done, total = len(synopsis.parts), synopsis.total_parts
        if how == "failed":
            status = f"{message} ({done} of {total} parts were done.)"
        elif how == "stopped":
            status = f"{message} after {done} of {total} parts."
        elif synopsis.complete:
            status = f"Done: {total} parts and the whole."
        else:
            status = f"Done: {done} of {total} parts; the summary of the whole is missing."
        self.synopsis_panel.finish(status)

    def _check_synopsis_current(self) -> None:
        """Mark the synopsis out of date once the document differs from the text it was made from."""
        if self._synopsis_source is not None:
            self.synopsis_panel.set_stale(self._editor.toPlainText() != self._synopsis_source)

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
        """The side column shows only while it has something in it (notes, the synopsis or a result)."""
        panels = (self.story_notes, self.synopsis_panel, self.result_panel)
        self.side_panel.setVisible(any(not panel.isHidden() for panel in panels))

    def _on_metadata_edited(self) -> None:
        if not self._loading_metadata:
            self.metadataChanged.emit()
