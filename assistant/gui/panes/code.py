"""The code pane: the code editor (``code_editor.py``), its colours (``code_highlighter.py``) and four AI actions.

Predictability rules, the same as the prose editor's: the pane runs at most one model job, and starting another
discards the running one, so stale text never lands. Complete at cursor and Generate from comment write into the
document as the answer streams, as ONE undo step, with the editor read-only meanwhile (so nothing can slip into the
middle of that undo step). Fix never writes while it runs: it shows a diff, and only Accept changes the document
(one undo step); Discard leaves the text, the undo stack and the modified flag exactly as they were. A failed job
leaves the document as it was.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from pygments.lexer import Lexer
from pygments.lexers.special import TextLexer
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QFont,
    QFontDatabase,
    QKeySequence,
    QPalette,
    QTextCursor,
)
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from assistant.core.code_text import (
    code_lines_so_far,
    fenced_code,
    final_code,
    fit_replacement,
    unified_diff_text,
)
from assistant.core.completion_rules import Cursor, cut, leading_whitespace
from assistant.core.languages import COMMON_LANGUAGES, GUESS_SAMPLE_CHARS, guess_language
from assistant.core.prompts import CodeRequest
from assistant.core.settings import AppSettings
from assistant.gui.jobs import JobRunner
from assistant.gui.panes.base import Pane
from assistant.gui.panes.code_editor import CodeEditor
from assistant.gui.panes.code_highlighter import (
    PygmentsHighlighter,
    lexer_display_name,
    lexer_for_alias,
    lexer_for_file_name,
)
from assistant.gui.panes.ghost_text import GhostTextController
from assistant.gui.preview_panel import PreviewPanel, TrackedRange
from assistant.gui.streamed_insertion import StreamedInsertion
from assistant.gui.theme import is_dark
from assistant.gui.worker import AiClient

GUESS_DELAY_MS = 400
"""Auto language guessing waits for a pause in typing; it reads only the first ``GUESS_SAMPLE_CHARS``."""


@dataclass
class _Fix:
    """What Fix works on (the selection, or the whole file) and, once the answer is in, the code to put there."""

    target: TrackedRange
    new_text: str = ""


class CodePane(Pane):
    """The code editor and its AI actions: Complete at cursor, Explain, Generate from comment, Fix.

    Signals:
        explainRequested(code, language_name): the user asked for an explanation; the main window sends it to chat.
        busyChanged(busy): a model job started (True) or ended (False).
        statusMessage(text): progress and errors (inherited), also shown in the pane's message line.
    """

    explainRequested = Signal(str, str)
    busyChanged = Signal(bool)
    menu_title = "Code"

    def __init__(self, client: AiClient, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(client, settings, parent)
        self.setObjectName("codePane")
        self._file_name: str | None = None
        self._guessed_alias = "text"
        self._guessed_sample: str | None = None
        self._jobs = JobRunner(client, self)
        self._job_kind = ""
        """What the running job does ("complete", "generate", "fix"); "" when none runs."""
        self._received = ""
        self._insertion: StreamedInsertion | None = None
        self._was_read_only = False
        self._completion_cursor = Cursor("")
        self._generate_indent = ""
        self._fix: _Fix | None = None

        self._editor = CodeEditor(self)
        self._highlighter = PygmentsHighlighter(self._editor.document())
        self.ghost = GhostTextController(
            self._editor,
            client,
            mode="code",
            pane="code",
            language=self._request_language,
            enabled=settings.suggest_in_code,
            parent=self,
        )
        self.ghost.message.connect(self._say)
        self._build_actions()
        self._build_ui()
        self._jobs.textArrived.connect(self._on_text)
        self._jobs.progress.connect(self._say)
        self._jobs.finished.connect(self._on_finished)
        self._jobs.failed.connect(self._on_failed)
        self._jobs.busyChanged.connect(self._stop_button.setEnabled)
        self._jobs.busyChanged.connect(self.busyChanged)
        self._guess_timer = QTimer(self)
        self._guess_timer.setSingleShot(True)
        self._guess_timer.setInterval(GUESS_DELAY_MS)
        self._guess_timer.timeout.connect(self._guess_language_now)
        self._editor.document().contentsChange.connect(self._on_contents_change)
        self.apply_settings(settings)
        self._update_lexer()

    # --- building ------------------------------------------------------------------------------------------------

    def _make_action(self, text: str, shortcut: str, name: str, slot: Any) -> QAction:
        action = QAction(text, self)
        action.setObjectName(name)
        action.setShortcut(QKeySequence(shortcut))
        # Only while focus is in this pane: the other panes may use the same keys for their own actions.
        action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        action.setToolTip(f"{text} ({QKeySequence(shortcut).toString(QKeySequence.SequenceFormat.NativeText)})")
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        self.complete_action = self._make_action(
            "Complete at Cursor", "Ctrl+Shift+Space", "codeCompleteAction", self.complete_at_cursor
        )
        self.explain_action = self._make_action(
            "Explain Selection", "Ctrl+Shift+X", "codeExplainAction", self.explain_selection
        )
        self.generate_action = self._make_action(
            "Generate from Comment", "Ctrl+Shift+G", "codeGenerateAction", self.generate_from_comment
        )
        self.fix_action = self._make_action("Fix Code", "Ctrl+Shift+F", "codeFixAction", self.fix_code)
        self.addActions([self.ghost.suggest_action, self.ghost.auto_action])
        self.ghost.auto_action.toggled.connect(self._remember_auto_suggest)

    def _build_ui(self) -> None:
        self._language_box = QComboBox()
        self._language_box.setObjectName("codeLanguage")
        self._language_box.setToolTip("The code's language: Auto follows the file name or guesses from the text")
        self._language_box.addItem("Auto", "")
        for label, alias in COMMON_LANGUAGES:
            self._language_box.addItem(label, alias)
        self._language_box.currentIndexChanged.connect(self._update_lexer)

        toolbar = QHBoxLayout()
        toolbar.addWidget(QLabel("Language:"))
        toolbar.addWidget(self._language_box)
        toolbar.addStretch(1)
        for action, name in (
            (self.complete_action, "codeComplete"),
            (self.explain_action, "codeExplain"),
            (self.generate_action, "codeGenerate"),
            (self.fix_action, "codeFix"),
        ):
            button = QToolButton()
            button.setObjectName(name)
            button.setDefaultAction(action)
            toolbar.addWidget(button)
        self._stop_button = QPushButton("Stop")
        self._stop_button.setObjectName("codeStop")
        self._stop_button.setToolTip("Stop the model (Esc)")
        self._stop_button.setEnabled(False)
        self._stop_button.clicked.connect(self.stop)
        toolbar.addWidget(self._stop_button)

        self._fix_panel = PreviewPanel(
            "codeFix",
            can_insert=False,
            can_copy=False,
            accept_tip="Replace the code with the fixed version (one undo step)",
            discard_tip="Close the diff and leave the code as it is",
        )
        self._fix_panel.view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self._fix_panel.acceptRequested.connect(self.accept_fix)
        self._fix_panel.discardRequested.connect(self.discard_fix)
        self._diff_highlighter = PygmentsHighlighter(self._fix_panel.view.document(), lexer_for_alias("diff"))

        self._error_input = QPlainTextEdit()
        self._error_input.setObjectName("codeErrorInput")
        self._error_input.setPlaceholderText("Optional: paste the error message or traceback here; Fix uses it.")
        self._error_input.setTabChangesFocus(True)
        error_label = QLabel("Error message for &Fix:")
        error_label.setBuddy(self._error_input)

        bottom = QWidget()
        bottom_layout = QVBoxLayout(bottom)
        bottom_layout.setContentsMargins(0, 0, 0, 0)
        bottom_layout.addWidget(self._fix_panel, 3)
        bottom_layout.addWidget(error_label)
        bottom_layout.addWidget(self._error_input, 1)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self._editor)
        splitter.addWidget(bottom)
        splitter.setStretchFactor(0, 4)
        splitter.setStretchFactor(1, 1)
        splitter.setChildrenCollapsible(False)

        self._message = QLabel()
        self._message.setObjectName("codeMessage")
        self._message.setWordWrap(True)
        self._message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        layout = QVBoxLayout(self)
        layout.addLayout(toolbar)
        layout.addWidget(splitter, 1)
        layout.addWidget(self._message)

    # --- the public face -----------------------------------------------------------------------------------------

    @property
    def editor(self) -> CodeEditor:
        return self._editor

    @property
    def highlighter(self) -> PygmentsHighlighter:
        return self._highlighter

    @property
    def file_name(self) -> str | None:
        return self._file_name

    @property
    def busy(self) -> bool:
        return self._jobs.busy

    def pane_actions(self) -> list[QAction]:
        return [
            self.complete_action,
            self.explain_action,
            self.generate_action,
            self.fix_action,
            self.ghost.suggest_action,
            self.ghost.auto_action,
        ]

    def _remember_auto_suggest(self, enabled: bool) -> None:
        """The menu toggle is the setting: the main window saves it with the others."""
        self.settings.suggest_in_code = enabled

    def set_file_name(self, name: str | None) -> None:
        """Highlight as the file name says ("x.rs" is Rust). A new name puts the language box back on Auto.

        Call it before loading the text, so a long file is highlighted once, in the right language.
        """
        name = name or None
        if name == self._file_name:
            return
        self._file_name = name
        if self._language_box.currentIndex() != 0:
            self._language_box.setCurrentIndex(0)  # updates the lexer
        else:
            self._update_lexer()

    def language_name(self) -> str:
        """The human name of the code's language ("Python", "Rust", "plain text")."""
        return lexer_display_name(self._highlighter.lexer)

    def set_dark(self, dark: bool) -> None:
        """Use the dark (or light) highlighting style, with the editor's colours to match."""
        self._highlighter.set_dark(dark)
        self._diff_highlighter.set_dark(dark)
        background, foreground = self._highlighter.default_colors()
        self._editor.set_colors(background, foreground)
        palette = self._fix_panel.view.palette()
        palette.setColor(QPalette.ColorRole.Base, background)
        palette.setColor(QPalette.ColorRole.Text, foreground)
        self._fix_panel.view.setPalette(palette)

    def apply_settings(self, settings: AppSettings) -> None:
        super().apply_settings(settings)
        self.ghost.auto_action.setChecked(settings.suggest_in_code)
        if settings.editor_font_family:
            font = QFont(settings.editor_font_family)
            font.setStyleHint(QFont.StyleHint.TypeWriter)
        else:
            font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setFixedPitch(True)
        if settings.editor_font_size > 0:
            font.setPointSize(settings.editor_font_size)
        self._editor.set_code_font(font)
        self._fix_panel.view.setFont(font)
        self._error_input.setFont(font)
        self.set_dark(is_dark(settings.theme))

    def stop(self) -> None:
        """Stop the running job now; text already written stays (one undo step), nothing more arrives."""
        if not self._jobs.busy:
            return
        kind = self._job_kind
        self._end_job()
        self._say("Fix stopped; the code is unchanged." if kind == "fix" else "Stopped.")

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt's name)
        self._end_job()
        super().closeEvent(event)

    # --- language ------------------------------------------------------------------------------------------------

    def _auto_lexer(self) -> Lexer:
        """What Auto means: the file name's language, else the language guessed from the text."""
        if self._file_name:
            by_name = lexer_for_file_name(self._file_name)
            if by_name is not None:
                return by_name
        return lexer_for_alias(self._guessed_alias)

    def _guessing_applies(self) -> bool:
        return not self._language_box.currentData() and (
            not self._file_name or lexer_for_file_name(self._file_name) is None
        )

    def _update_lexer(self) -> None:
        auto = self._auto_lexer()
        alias = self._language_box.currentData()
        self._highlighter.set_lexer(lexer_for_alias(alias) if alias else auto)
        self._editor.language = self._request_language() or ""
        self._language_box.setItemText(0, f"Auto ({lexer_display_name(auto)})")
        if self._guessing_applies():
            self._guess_timer.start()

    def _on_contents_change(self, _position: int, removed: int, added: int) -> None:
        if removed == added:
            return  # only formats changed (highlighting), or one character replaced another
        if self._insertion is not None and not self._insertion.writing:
            # The text changed under the AI's insertion (a file was loaded, Replace All ran): its answer no longer
            # fits where it was going, so it stops, keeping what it wrote.
            self._end_job()
            self._say("Stopped: the code changed while the model was writing.")
        if self._guessing_applies():
            self._guess_timer.start()

    def _guess_language_now(self) -> None:
        if not self._guessing_applies():
            return
        document = self._editor.document()
        head = QTextCursor(document)
        head.setPosition(min(GUESS_SAMPLE_CHARS, document.characterCount() - 1), QTextCursor.MoveMode.KeepAnchor)
        sample = head.selection().toPlainText()
        if sample == self._guessed_sample:
            return
        self._guessed_sample = sample
        alias = guess_language(sample).fence
        if alias != self._guessed_alias:
            self._guessed_alias = alias
            self._update_lexer()

    def _request_language(self) -> str | None:
        """The language for a request: the lexer's alias, or None to let the prompt builder guess."""
        lexer = self._highlighter.lexer
        if isinstance(lexer, TextLexer) or not lexer.aliases:
            return None
        return str(lexer.aliases[0])

    # --- the actions ---------------------------------------------------------------------------------------------

    def complete_at_cursor(self) -> None:
        """Continue the code at the cursor, writing the answer in as it streams (one undo step)."""
        with self._jobs.replacing():
            self._end_job()
            cursor = self._editor.textCursor()
            position = cursor.position()
            before = QTextCursor(self._editor.document())
            before.setPosition(position, QTextCursor.MoveMode.KeepAnchor)
            prefix = before.selection().toPlainText()
            if not prefix.strip():
                self._say("Write some code first: Complete continues the code before the cursor.")
                return
            after = QTextCursor(self._editor.document())
            after.setPosition(position)
            after.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
            self._completion_cursor = Cursor.from_text(prefix, after.selection().toPlainText())
            cursor.clearSelection()
            self._editor.setTextCursor(cursor)
            request = CodeRequest(prefix, mode="complete", language=self._request_language(), filename=self._file_name)
            self._insertion = StreamedInsertion(self._editor, position)
            self._start_job("complete", request, "Completing… (Esc stops)")

    def explain_selection(self) -> None:
        """Hand the selection (or the whole file) to the chat pane for an explanation; no generation here."""
        cursor = self._editor.textCursor()
        code = cursor.selection().toPlainText() if cursor.hasSelection() else self._editor.toPlainText()
        if not code.strip():
            self._say("Select the code to explain.")
            return
        self.explainRequested.emit(code, self.language_name())

    def generate_from_comment(self) -> None:
        """Write code for the selected description (or the cursor's line) and insert it below, as it streams."""
        with self._jobs.replacing():
            self._end_job()
            document = self._editor.document()
            cursor = self._editor.textCursor()
            if cursor.hasSelection():
                description = cursor.selection().toPlainText()
                last_block = document.findBlock(cursor.selectionEnd())
                first_block = document.findBlock(cursor.selectionStart())
                ends_at_line_start = cursor.selectionEnd() == last_block.position()
                if last_block.blockNumber() > first_block.blockNumber() and ends_at_line_start:
                    last_block = last_block.previous()
            else:
                first_block = last_block = cursor.block()
                description = first_block.text()
            if not description.strip():
                self._say("Write a comment that says what the code should do, then Generate on that line.")
                return
            self._generate_indent = leading_whitespace(first_block.text())
            request = CodeRequest(
                description.strip(), mode="generate", language=self._request_language(), filename=self._file_name
            )
            self._insertion = StreamedInsertion(self._editor, last_block.position() + last_block.length() - 1)
            self._start_job("generate", request, "Writing code… (Esc stops)")

    def fix_code(self) -> None:
        """Ask for a fixed version of the selection (or the whole file) and show it as a diff to accept or discard."""
        with self._jobs.replacing():
            self._end_job()
            self._close_diff()
            cursor = self._editor.textCursor()
            if cursor.hasSelection():
                target = TrackedRange.of_selection(cursor)
            else:
                target = TrackedRange.of_document(self._editor.document())
            if not target.original.strip():
                self._say("There is no code to fix.")
                return
            self._fix = _Fix(target)
            request = CodeRequest(
                target.original,
                mode="fix",
                language=self._request_language(),
                filename=self._file_name,
                error=self._error_input.toPlainText(),
            )
            self._start_job("fix", request, "Fixing… (Esc stops)")

    def accept_fix(self) -> None:
        """Put the fixed code in place of what was fixed, as one undo step, if that code is still unchanged."""
        fix = self._fix
        if fix is None or self._fix_panel.isHidden():
            return
        cursor = fix.target.replace(fix.new_text)
        self._close_diff()
        if cursor is None:
            self._say("The code changed while the fix was shown; run Fix again.")
            return
        self._editor.setTextCursor(cursor)
        self._error_input.clear()
        self._say("Fix applied. Undo takes it back.")

    def discard_fix(self) -> None:
        """Close the diff; the document, its undo stack and its modified flag stay exactly as they are."""
        self._close_diff()
        self._say("Fix discarded.")

    # --- running a job -------------------------------------------------------------------------------------------

    def _say(self, text: str) -> None:
        self._message.setText(text)
        self.statusMessage.emit(text)

    def _start_job(self, kind: str, request: CodeRequest, message: str) -> None:
        self._job_kind = kind
        self._received = ""
        if kind in ("complete", "generate"):
            self._was_read_only = self._editor.isReadOnly()
            self._editor.setReadOnly(True)  # nothing may slip into the middle of the AI's undo step
        self._jobs.start(request, self.settings.sampler)
        self._say(message)

    def _end_job(self) -> None:
        """Forget the running job (nothing it still produces lands) and give the editor back."""
        self._jobs.discard()
        kind, self._job_kind = self._job_kind, ""
        if not kind:
            return
        if kind in ("complete", "generate"):
            self._editor.setReadOnly(self._was_read_only)
        else:
            self._fix = None  # a fix job that ended shows its diff from the target _finish kept
        self._insertion = None

    def _on_text(self, text: str) -> None:
        self._received += text
        if self._show_received(final=False):
            self._finish("natural end")

    def _on_finished(self, stats: dict[str, Any]) -> None:
        self._show_received(final=True)
        self._finish(str(stats.get("finish_reason", "")))

    def _on_failed(self, message: str) -> None:
        if self._insertion is not None:
            self._insertion.roll_back()
        self._end_job()
        self._say(message)

    def _show_received(self, final: bool) -> bool:
        """Bring the document up to date with the answer so far; True when the answer needs nothing more."""
        insertion = self._insertion
        if self._job_kind == "complete" and insertion is not None:
            verdict = cut(self._received, self._completion_cursor, "code", final, max_lines=None)
            insertion.show(verdict.text)
            return verdict.stop
        if self._job_kind == "generate" and insertion is not None:
            lines, done = code_lines_so_far(self._received, final)
            add_indent = bool(lines) and not leading_whitespace(lines[0])
            indent = self._generate_indent if add_indent else ""
            insertion.show("".join("\n" + (indent + line if line.strip() else line) for line in lines))
            return done
        if self._job_kind == "fix":
            _code, closed = fenced_code(self._received)
            return closed
        return False

    def _finish(self, finish_reason: str) -> None:
        kind = self._job_kind
        insertion = self._insertion
        fix = self._fix
        wrote = bool(insertion and insertion.text)
        received = self._received
        self._end_job()
        if kind == "fix":
            if fix is not None:
                self._show_fix(fix, received, cut_short=finish_reason == "length")
        elif wrote:
            self._say("Code inserted. Undo takes it back." if kind == "generate" else "Completed. Undo takes it back.")
        else:
            if insertion is not None:
                insertion.roll_back()  # whitespace that was taken back again leaves no empty undo step
            self._say("The model wrote no code here." if kind == "generate" else "The model had nothing to add here.")

    # --- the fix diff --------------------------------------------------------------------------------------------

    def _show_fix(self, fix: _Fix, answer: str, cut_short: bool) -> None:
        code = final_code(answer)
        if not code.strip():
            self._say("The model returned no code to compare.")
            return
        self._fix = fix
        original = fix.target.original
        fix.new_text = fit_replacement(original, code)
        name = os.path.basename(self._file_name) if self._file_name else "code"
        if fix.new_text == original:
            self._fix_panel.show_result("No changes: the model returned the same code.", "", can_accept=True)
        else:
            title = "Suggested fix:" if fix.target.whole_document else "Suggested fix of the selection:"
            if cut_short:
                title += (
                    " The answer reached the length limit, so the end may be missing: check the diff, or raise the"
                    " maximum answer length in Settings."
                )
            self._fix_panel.show_result(title, unified_diff_text(original, fix.new_text, name), can_accept=True)
        self._say("Review the fix, then Accept or Discard.")

    def _close_diff(self) -> None:
        self._fix_panel.close_panel()
        self._fix = None
