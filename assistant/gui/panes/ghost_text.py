"""Inline ghost-text suggestions for a plain-text editor, as Copilot, Continue and Tabby show them.

After a pause in typing the controller asks the model for the text that could follow the cursor and draws it,
muted, right after the cursor. Tab takes all of it (one undo step), Ctrl+Right the next word, Esc drops it, and
typing the same characters walks through it. Anything else (another edit, a cursor move, a click, losing focus,
scrolling the cursor away) dismisses it.

The ghost is drawn in the cursor block's ``QTextLayout`` preedit area, the place input methods show text that is
being composed. Qt lays that text out inline, wraps it and pushes the following lines down, yet it is not part of
the document: ``toPlainText()``, saving, the undo stack and the modified flag never see it.

The controller applies no stop rules of its own: the engine decides where a suggestion ends and which ones to
drop. It only decides *when* to ask, and makes sure a suggestion is shown only for the exact text and cursor
position it was asked for (the latest request wins; every edit discards the one in flight).
"""

from __future__ import annotations

import logging
import re
import statistics
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import (
    QAction,
    QColor,
    QFont,
    QInputMethodEvent,
    QKeyEvent,
    QKeySequence,
    QPalette,
    QTextCharFormat,
    QTextCursor,
    QTextFormat,
    QTextLayout,
)
from PySide6.QtWidgets import QPlainTextEdit

from assistant.core.completion_rules import Cursor, should_suggest
from assistant.core.prompts import InlineRequest
from assistant.gui.jobs import JobRunner
from assistant.gui.qt_text import utf16_length
from assistant.gui.streamed_insertion import insert_as_one_step
from assistant.gui.worker import LEARNING_MESSAGE, AiClient

log = logging.getLogger(__name__)

PREFIX_CHARS = 4000
"""Text before the cursor sent with a request; the engine trims it to its token budget."""
PREFIX_STRIDE = 512
"""The prefix starts at a multiple of this many characters, so it stays put while the user types on and the
engine can reuse the KV cache of the previous request (a window sliding by one character would defeat it)."""
SUFFIX_CHARS = 1000
"""Text after the cursor sent with a request (fill-in-the-middle and the repeat check use it)."""
DEFAULT_DELAY_MS = 250
"""The pause before asking, until the user's typing rhythm is known."""
MIN_DELAY_MS = 100
MAX_DELAY_MS = 1000
DELAY_PER_KEY_INTERVAL = 2.5
"""A pause counts as "done typing" when it is this many times the user's usual gap between keys."""
RHYTHM_SAMPLES = 16
PAUSE_SECONDS = 2.0
"""Gaps longer than this are the user thinking, not their typing rhythm: they are left out of the median."""
MIN_RHYTHM_SAMPLES = 3
GHOST_ALPHA = 120
"""Opacity (of 255) of the ghost's text colour: clearly text, clearly not yet the user's."""
GHOST_MARKER = int(QTextFormat.Property.UserProperty) + 0x6705
"""A property set on the ghost's format range, so it is told apart from the highlighter's ranges."""
SUGGEST_SHORTCUT = "Ctrl+Space"
AUTO_SHORTCUT = "Ctrl+Shift+I"
"""Toggles automatic (inline) suggestions for the pane that has the focus."""
LINE_SEPARATOR = "\u2028"
"""Inside one block's layout, a line break in the ghost is drawn as Qt's line separator."""

_NEXT_WORD = re.compile(r"\s*(?:\w+|[^\w\s]+)")
_MODIFIER_KEYS = {
    Qt.Key.Key_Shift,
    Qt.Key.Key_Control,
    Qt.Key.Key_Alt,
    Qt.Key.Key_Meta,
    Qt.Key.Key_AltGr,
    Qt.Key.Key_CapsLock,
}
_COMMAND_MODIFIERS = (
    Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier | Qt.KeyboardModifier.MetaModifier
)


def adaptive_delay_ms(intervals: Sequence[float]) -> int:
    """How long to wait after the last key before asking, from the recent gaps between keys (seconds).

    A fast typist gets a suggestion soon after stopping; a slow one is not interrupted between two keys.
    """
    if len(intervals) < MIN_RHYTHM_SAMPLES:
        return DEFAULT_DELAY_MS
    wanted = statistics.median(intervals) * 1000 * DELAY_PER_KEY_INTERVAL
    return int(min(MAX_DELAY_MS, max(MIN_DELAY_MS, wanted)))


def next_word(text: str) -> str:
    """The part of a suggestion Ctrl+Right accepts: up to the end of its next word (or run of punctuation)."""
    match = _NEXT_WORD.match(text)
    return match.group() if match else text


def _without_broken_surrogates(prefix: str, suffix: str) -> tuple[str, str]:
    """A window cut by Qt position may split a surrogate pair; the tokenizer must not see half of one."""
    if prefix and "\udc00" <= prefix[0] <= "\udfff":
        prefix = prefix[1:]
    if suffix and "\ud800" <= suffix[-1] <= "\udbff":
        suffix = suffix[:-1]
    return prefix, suffix


def _is_ghost_range(format_range: QTextLayout.FormatRange) -> bool:
    return bool(format_range.format.property(GHOST_MARKER))


def _copy_range(format_range: QTextLayout.FormatRange, start: int, length: int) -> QTextLayout.FormatRange:
    copy = QTextLayout.FormatRange()
    copy.start = start
    copy.length = length
    copy.format = format_range.format
    return copy


def ranges_around_gap(
    ranges: Sequence[QTextLayout.FormatRange], position: int, length: int
) -> list[QTextLayout.FormatRange]:
    """Format ranges of a block's text, moved to make room for ``length`` units of preedit text at ``position``.

    Ranges after the gap move right; a range the gap falls into is split in two, so the ghost takes no colour
    from the token it follows and the text after the cursor keeps its own.
    """
    moved: list[QTextLayout.FormatRange] = []
    for format_range in ranges:
        start, end = format_range.start, format_range.start + format_range.length
        if end <= position:
            moved.append(format_range)
        elif start >= position:
            moved.append(_copy_range(format_range, start + length, end - start))
        else:
            moved.append(_copy_range(format_range, start, position - start))
            moved.append(_copy_range(format_range, position + length, end - position))
    return moved


def ranges_without_gap(
    ranges: Sequence[QTextLayout.FormatRange], position: int, length: int
) -> list[QTextLayout.FormatRange]:
    """The inverse of :func:`ranges_around_gap`: take the preedit span out of every range again.

    It also undoes the highlighter's own adjustment (when it re-highlighted the block while the ghost was shown,
    it stretched the range that ended at the cursor over the ghost).
    """
    gap_end = position + length
    kept: list[QTextLayout.FormatRange] = []
    for format_range in ranges:
        if _is_ghost_range(format_range):
            continue
        start, end = format_range.start, format_range.start + format_range.length
        new_start = start if start <= position else max(position, start - length)
        new_end = end if end <= position else max(position, end - length)
        if start >= position and end <= gap_end:
            continue  # it lay wholly inside the ghost
        if new_end > new_start:
            kept.append(_copy_range(format_range, new_start, new_end - new_start))
    return kept


@dataclass
class _ShownGhost:
    """What is drawn now, and where: the anchor cursor follows edits, so the right block is found to erase it."""

    text: str
    anchor: QTextCursor
    preedit: str


class GhostTextController(QObject):
    """Ghost-text suggestions in one editor: when to ask, what to show, and the keys that take or drop it.

    Signals:
        ghostShown(text): ghost text appeared or changed (the text now shown after the cursor).
        ghostHidden(): the ghost text went away (accepted, dismissed or replaced by an edit).
        requestSent(request): an ``InlineRequest`` went to the model (for tests and benchmarks).
        message(text): a sentence for the status bar, only for Suggest now: why nothing was asked or found.
    """

    ghostShown = Signal(str)
    ghostHidden = Signal()
    requestSent = Signal(object)
    message = Signal(str)

    def __init__(
        self,
        editor: QPlainTextEdit,
        client: AiClient,
        mode: str,
        pane: str,
        language: Callable[[], str | None] | None = None,
        enabled: bool = True,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        if mode not in ("prose", "code"):
            raise ValueError(f"mode must be 'prose' or 'code', not {mode!r}")
        self._editor = editor
        self._client = client
        self._mode = mode
        self._pane = pane
        self._language = language or (lambda: None)
        self._enabled = enabled

        self._jobs = JobRunner(client, self)
        self._jobs.suggestionChanged.connect(self._on_suggestion)
        self._jobs.finished.connect(self._on_finished)
        self._jobs.failed.connect(self._on_failed)
        self._manual = False
        self._suggestion = ""
        """The current job's whole suggestion so far."""
        self._consumed = ""
        """What of that suggestion the user has typed or accepted since the request (not shown again)."""
        self._expected_state: tuple[int, int] | None = None
        """(edit serial, cursor position) for which the current suggestion is valid; any other state is stale."""
        self._shown: _ShownGhost | None = None
        self._edit_serial = 0
        self._serial_seen_by_cursor = 0
        self._last_cursor_position = editor.textCursor().position()
        self._inserting = False
        self._key_in_progress = False
        self._edits_during_key: list[tuple[int, int, int]] = []
        self._key_intervals: deque[float] = deque(maxlen=RHYTHM_SAMPLES)
        self._last_key_time: float | None = None

        self.requests_sent = 0
        """How many requests went to the model (automatic and by hand)."""
        self.accepted_count = 0
        """How many times a suggestion (or a word of it) was taken into the document."""

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(lambda: self._request(manual=False))

        self.auto_action = self._action(
            "Automatic suggestions",
            f"{pane}AutoSuggestAction",
            AUTO_SHORTCUT,
            "Suggest how to go on after a pause in typing; Tab accepts, Esc dismisses",
        )
        self.auto_action.setCheckable(True)
        self.auto_action.setChecked(enabled)
        self.auto_action.toggled.connect(self.set_enabled)
        self.suggest_action = self._action(
            "Suggest now", f"{pane}SuggestNowAction", SUGGEST_SHORTCUT, "Suggest how to go on from the cursor"
        )
        self.suggest_action.triggered.connect(self.suggest_now)

        document = editor.document()
        document.contentsChange.connect(self._on_contents_change)
        document.contentsChanged.connect(self._keep_ghost_format_on_top)
        editor.cursorPositionChanged.connect(self._on_cursor_moved)
        editor.selectionChanged.connect(self._on_selection_changed)
        editor.verticalScrollBar().valueChanged.connect(self._on_scrolled)
        editor.horizontalScrollBar().valueChanged.connect(self._on_scrolled)
        client.stateChanged.connect(self._on_client_state)
        editor.installEventFilter(self)
        editor.viewport().installEventFilter(self)

    def _action(self, text: str, name: str, shortcut: str, tip: str) -> QAction:
        """A menu-only action whose shortcut works where the pane (not another pane) has the focus."""
        action = QAction(text, self)
        action.setObjectName(name)
        sequence = QKeySequence(shortcut)
        action.setShortcut(sequence)
        action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        action.setToolTip(f"{tip} ({sequence.toString(QKeySequence.SequenceFormat.NativeText)})")
        action.setProperty("toolbar", False)
        return action

    # --- public API ----------------------------------------------------------------------------------------

    @property
    def ghost_text(self) -> str:
        """The suggestion shown after the cursor now ("" when none)."""
        return self._shown.text if self._shown is not None else ""

    @property
    def enabled(self) -> bool:
        """Whether suggestions come by themselves after a pause (Suggest now works either way)."""
        return self._enabled

    @property
    def delay_ms(self) -> int:
        """The pause in typing after which an automatic request goes out, adapted to the user's rhythm."""
        return adaptive_delay_ms(list(self._key_intervals))

    @property
    def waiting(self) -> bool:
        """True while an automatic request waits for the pause in typing to be long enough."""
        return self._timer.isActive()

    @property
    def in_flight(self) -> bool:
        """True while the model works on this editor's latest request."""
        return self._jobs.busy

    def set_enabled(self, enabled: bool) -> None:
        """Turn automatic suggestions on or off; turning them off also drops what is shown or asked for."""
        if enabled == self._enabled:
            return
        self._enabled = enabled
        if self.auto_action.isChecked() != enabled:
            self.auto_action.setChecked(enabled)
        if not enabled:
            self.dismiss()

    def suggest_now(self) -> None:
        """Ask at once, whatever the automatic setting and the text right of the cursor (Ctrl+Space)."""
        if not self._editor.hasFocus():
            self._editor.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self._request(manual=True)

    def accept(self) -> bool:
        """Insert the whole ghost text at the cursor as one undo step; False when none is shown."""
        shown = self._shown
        if shown is None:
            return False
        self._erase()
        self._drop_job()
        self._insert(shown.text)
        self.accepted_count += 1
        self.ghostHidden.emit()
        self._schedule()  # the next suggestion follows after the usual pause, so Tab, Tab… writes on
        return True

    def accept_word(self) -> bool:
        """Insert the ghost's next word (Ctrl+Right); the rest stays shown. False when no ghost is shown."""
        shown = self._shown
        if shown is None:
            return False
        word = next_word(shown.text)
        rest = shown.text[len(word) :]
        self._erase()
        self._insert(word)
        self.accepted_count += 1
        self._consumed += word
        self._expected_state = self._state()
        if rest:
            self._draw(rest)
        else:
            self.ghostHidden.emit()
            self._drop_job()
            self._schedule()
        return True

    def dismiss(self) -> None:
        """Drop the ghost, the request in flight and the one waiting for a pause; the document is untouched."""
        self._timer.stop()
        self._drop_job()
        self._hide()

    # --- asking --------------------------------------------------------------------------------------------

    def _state(self) -> tuple[int, int]:
        return self._edit_serial, self._editor.textCursor().position()

    def _schedule(self) -> None:
        """Ask after a pause in typing (restarted by every edit), when automatic suggestions are on."""
        if self._enabled and not self._client.busy:
            self._timer.start(self.delay_ms)
        else:
            self._timer.stop()

    def _surroundings(self, cursor: QTextCursor) -> tuple[str, str]:
        """The text before the cursor (its last ``PREFIX_CHARS``) and after it (its first ``SUFFIX_CHARS``)."""
        document = self._editor.document()
        position = cursor.position()
        before = QTextCursor(document)
        start = max(0, position - PREFIX_CHARS)
        before.setPosition(-(-start // PREFIX_STRIDE) * PREFIX_STRIDE)
        before.setPosition(position, QTextCursor.MoveMode.KeepAnchor)
        after = QTextCursor(document)
        after.setPosition(position)
        after.setPosition(min(document.characterCount() - 1, position + SUFFIX_CHARS), QTextCursor.MoveMode.KeepAnchor)
        return _without_broken_surrogates(before.selection().toPlainText(), after.selection().toPlainText())

    def _why_not(self, manual: bool) -> str | None:
        """Why no request may go out now (a sentence for the user), or None when one may."""
        editor = self._editor
        if self._client.model_info is None:
            return "The model is not ready yet."
        if self._client.learning:
            return LEARNING_MESSAGE
        if self._client.busy:
            return "The model is busy with another task; try again when it is done."
        if editor.isReadOnly() or not editor.isVisible():
            return "Suggestions need an editable text in view."
        if not manual and (not self._enabled or not editor.hasFocus()):
            return "Automatic suggestions are off here."
        if editor.textCursor().hasSelection():
            return "Clear the selection to get a suggestion."
        return None

    def _request(self, manual: bool) -> None:
        """Send the text around the cursor to the model; the previous request is discarded (the latest wins)."""
        self._timer.stop()
        reason = self._why_not(manual)
        if reason is not None:
            if manual:
                self.message.emit(reason)
            return
        prefix, suffix = self._surroundings(self._editor.textCursor())
        if not prefix.strip():
            if manual:
                self.message.emit("Write a few words first, so there is something to go on from.")
            return
        if not manual and not should_suggest(Cursor.from_text(prefix, suffix), self._mode):
            return  # typing in the middle of a line: leave it alone until asked
        self._hide()
        request = InlineRequest(
            mode=self._mode,
            prefix=prefix,
            suffix=suffix,
            language=self._language() if self._mode == "code" else None,
            pane=self._pane,
        )
        self._jobs.suggest(request)  # the previous request is discarded: the latest wins
        self._manual = manual
        self._suggestion = ""
        self._consumed = ""
        self._expected_state = self._state()
        self.requests_sent += 1
        self.requestSent.emit(request)

    def _drop_job(self) -> None:
        """Discard the request in flight: nothing it still produces reaches the editor."""
        self._jobs.discard()

    # --- results (only the latest request's: the runner drops the others) ---------------------------------

    def _on_suggestion(self, text: str) -> None:
        self._suggestion = text.replace("\r\n", "\n").replace("\r", "\n")
        self._show_suggestion()

    def _on_finished(self, stats: dict[str, Any]) -> None:
        if stats.get("finish_reason") != "done":
            return
        self._suggestion = str(stats.get("text", "")).replace("\r\n", "\n").replace("\r", "\n")
        self._show_suggestion()
        if self._manual and not self._suggestion.strip() and self._shown is None:
            self.message.emit("No suggestion here.")

    def _on_failed(self, message: str) -> None:
        log.info("Inline suggestion failed: %s", message)
        if self._manual:
            self.message.emit(message)

    def _show_suggestion(self) -> None:
        """Draw the current suggestion, less what was typed through, if the text is still exactly as asked."""
        if self._expected_state != self._state() or self._client.busy or self._editor.textCursor().hasSelection():
            self._drop_job()
            self._hide()
            return
        text = self._suggestion
        remaining = text[len(self._consumed) :] if text.startswith(self._consumed) else ""
        self._draw(remaining)

    # --- drawing -------------------------------------------------------------------------------------------

    def _ghost_format(self) -> QTextCharFormat:
        """The editor's own text colour, faded; plain weight and style whatever token the cursor follows."""
        ghost_format = QTextCharFormat()
        color = QColor(self._editor.palette().color(QPalette.ColorRole.Text))
        color.setAlpha(GHOST_ALPHA)
        ghost_format.setForeground(color)
        ghost_format.setFontWeight(QFont.Weight.Normal)
        ghost_format.setFontItalic(False)
        ghost_format.setFontUnderline(False)
        ghost_format.setProperty(GHOST_MARKER, True)
        return ghost_format

    def _draw(self, text: str) -> None:
        """Show ``text`` after the cursor (replacing any ghost); "" hides it. The document is not changed."""
        cursor = self._editor.textCursor()
        if self._shown is not None and self._shown.text == text and self._shown.anchor.position() == cursor.position():
            return
        was_shown = self._shown is not None
        self._erase()
        if not text:
            if was_shown:
                self.ghostHidden.emit()
            return
        block = cursor.block()
        layout = block.layout()
        position = cursor.positionInBlock()
        preedit = text.replace("\n", LINE_SEPARATOR)
        length = utf16_length(preedit)
        layout.setPreeditArea(position, preedit)
        ghost_range = QTextLayout.FormatRange()
        ghost_range.start = position
        ghost_range.length = length
        ghost_range.format = self._ghost_format()
        layout.setFormats([*ranges_around_gap(layout.formats(), position, length), ghost_range])
        self._relayout(block.position(), block.length())
        anchor = QTextCursor(cursor)
        anchor.clearSelection()
        anchor.setKeepPositionOnInsert(True)  # text typed at the cursor must not carry the anchor to a new line
        self._shown = _ShownGhost(text, anchor, preedit)
        self.ghostShown.emit(text)

    def _erase(self) -> None:
        """Take the ghost out of the layout it was drawn in, restoring that block's own formats."""
        shown, self._shown = self._shown, None
        if shown is None:
            return
        block = shown.anchor.block()
        for candidate in (block, block.previous(), block.next()):  # an edit may have split the ghost's line
            if not candidate.isValid():
                continue
            layout = candidate.layout()
            if layout is None or layout.preeditAreaText() != shown.preedit:
                continue
            position = layout.preeditAreaPosition()
            layout.setPreeditArea(-1, "")
            layout.setFormats(ranges_without_gap(layout.formats(), position, utf16_length(shown.preedit)))
            self._relayout(candidate.position(), candidate.length())
            return

    def _hide(self) -> None:
        if self._shown is not None:
            self._erase()
            self.ghostHidden.emit()

    def _relayout(self, position: int, length: int) -> None:
        self._editor.document().markContentsDirty(position, length)
        self._editor.viewport().update()

    def _keep_ghost_format_on_top(self) -> None:
        """A highlighter that re-ran over the ghost's line put its ranges after the ghost's: move the ghost's last."""
        shown = self._shown
        if shown is None:
            return
        block = shown.anchor.block()
        layout = block.layout()
        if layout is None or layout.preeditAreaText() != shown.preedit:
            return
        ranges = list(layout.formats())
        if ranges and _is_ghost_range(ranges[-1]):
            return
        ghosts = [format_range for format_range in ranges if _is_ghost_range(format_range)]
        others = [format_range for format_range in ranges if not _is_ghost_range(format_range)]
        layout.setFormats(others + ghosts)
        self._relayout(block.position(), block.length())

    def _insert(self, text: str) -> None:
        """Put accepted text in at the cursor as its own undo step."""
        self._inserting = True
        try:
            insert_as_one_step(self._editor, text)
        finally:
            self._inserting = False
        self._serial_seen_by_cursor = self._edit_serial
        self._last_cursor_position = self._editor.textCursor().position()
        self._editor.ensureCursorVisible()

    # --- what the user does --------------------------------------------------------------------------------

    def _on_contents_change(self, position: int, removed: int, added: int) -> None:
        """Every edit makes older requests stale; a user's edit (not ours) also restarts the pause."""
        self._edit_serial += 1
        if self._editor.textCursor().position() == self._last_cursor_position:
            self._serial_seen_by_cursor = self._edit_serial  # no cursor signal will follow this edit
        if self._inserting:
            return
        if self._key_in_progress:
            self._edits_during_key.append((position, removed, added))
            return  # the key handler decides: typed through the ghost, or a new start
        self._drop_job()
        self._hide()
        self._schedule()

    def _note_rhythm(self) -> None:
        """Remember the gap since the previous key: the pause before asking follows the user's speed."""
        now = time.monotonic()
        if self._last_key_time is not None and now - self._last_key_time <= PAUSE_SECONDS:
            self._key_intervals.append(now - self._last_key_time)
        self._last_key_time = now

    def _on_cursor_moved(self) -> None:
        """A move that no edit explains (arrow keys, a click, code) means the user went elsewhere."""
        self._last_cursor_position = self._editor.textCursor().position()
        if self._inserting or self._key_in_progress:
            return
        if self._serial_seen_by_cursor != self._edit_serial:
            self._serial_seen_by_cursor = self._edit_serial
            return
        if self._shown is not None and self._shown.anchor.position() == self._editor.textCursor().position():
            return
        self.dismiss()

    def _on_selection_changed(self) -> None:
        if self._editor.textCursor().hasSelection():
            self.dismiss()

    def _on_scrolled(self, _value: int) -> None:
        if self._shown is not None and not self._editor.viewport().rect().intersects(self._editor.cursorRect()):
            self.dismiss()

    def _on_client_state(self, _state: str) -> None:
        """A user's action started (Continue story, Complete…): it goes first, and suggestions step aside."""
        if self._client.busy:
            self.dismiss()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        """The keys that take or drop a suggestion, and everything else that must dismiss it first."""
        kind = event.type()
        if watched is self._editor:
            if kind == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent):
                return self._claim_shortcut(event)
            if kind == QEvent.Type.KeyPress and isinstance(event, QKeyEvent):
                return self._key_pressed(event)
            if kind in (QEvent.Type.FocusOut, QEvent.Type.Hide):
                self.dismiss()
            elif (
                kind == QEvent.Type.InputMethod
                and isinstance(event, QInputMethodEvent)
                and (event.commitString() or event.preeditString())
            ):
                self.dismiss()  # an input method composes in the same preedit area: make room first
        elif kind in (QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonDblClick):
            self.dismiss()  # before the editor reads the click: a click must never land inside the ghost
        return False

    def _is_suggest_key(self, event: QKeyEvent) -> bool:
        return QKeySequence(event.keyCombination()) == QKeySequence(SUGGEST_SHORTCUT)

    def _ghost_key(self, event: QKeyEvent) -> bool:
        """Tab, Ctrl+Right and Esc act on a shown ghost."""
        key, modifiers = event.key(), event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        no_modifiers = modifiers == Qt.KeyboardModifier.NoModifier
        return (key in (Qt.Key.Key_Tab, Qt.Key.Key_Escape) and no_modifiers) or (
            key == Qt.Key.Key_Right and modifiers == Qt.KeyboardModifier.ControlModifier
        )

    def _is_typing(self, event: QKeyEvent) -> bool:
        """A key that writes a character (or a line break) that could match the ghost's next one."""
        if event.modifiers() & _COMMAND_MODIFIERS:
            return False
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            return True
        text = event.text()
        return bool(text) and text.isprintable()

    def _claim_shortcut(self, event: QKeyEvent) -> bool:
        """Keep the ghost's keys from window shortcuts; anything else that may edit drops the ghost first."""
        if self._is_suggest_key(event) or (self._shown is not None and self._ghost_key(event)):
            event.accept()
            return True
        if self._shown is not None and event.key() not in _MODIFIER_KEYS and not self._is_typing(event):
            self.dismiss()  # e.g. Ctrl+Z or Ctrl+V: the ghost must be gone before the text changes
        return False

    def _key_pressed(self, event: QKeyEvent) -> bool:
        key = event.key()
        if key in _MODIFIER_KEYS:
            return False
        self._note_rhythm()
        if self._is_suggest_key(event):
            self.suggest_now()
            return True
        if self._shown is None:
            if key == Qt.Key.Key_Escape:
                self.dismiss()  # a request not shown yet is dropped too; Esc goes on to stop whatever else runs
            return False
        if self._ghost_key(event):
            if key == Qt.Key.Key_Tab:
                self.accept()
            elif key == Qt.Key.Key_Right:
                self.accept_word()
            else:
                self.dismiss()
            return True
        if self._is_typing(event):
            return self._type_through(event)
        self.dismiss()
        return False

    def _type_through(self, event: QKeyEvent) -> bool:
        """Let the editor handle the key now, then keep the rest of the ghost if the key typed its next text."""
        shown = self._shown
        assert shown is not None
        position = shown.anchor.position()
        self._erase()  # the editor must insert into a clean line
        self._key_in_progress = True
        self._edits_during_key = []
        try:
            self._editor.event(event)
        finally:
            self._key_in_progress = False
        edits, self._edits_during_key = self._edits_during_key, []
        cursor = self._editor.textCursor()
        self._serial_seen_by_cursor = self._edit_serial
        self._last_cursor_position = cursor.position()
        typed = self._typed_text(edits, position, cursor)
        if not edits and cursor.position() == position and not cursor.hasSelection():
            self._draw(shown.text)  # the key changed nothing: the ghost stays
        elif typed and shown.text.startswith(typed):
            self._consumed += typed
            self._expected_state = self._state()
            rest = shown.text[len(typed) :]
            if rest:
                self._draw(rest)  # no new request while what is typed still matches
            else:
                self.ghostHidden.emit()
                if not self._jobs.busy:
                    self._schedule()  # typed all of it: ask what comes next
        else:
            self.ghostHidden.emit()
            self._drop_job()
            if edits:
                self._schedule()
        # An ignored key goes on to the parent as usual (Qt delivers it to the editor once more, which ignores it).
        return event.isAccepted()

    def _typed_text(self, edits: list[tuple[int, int, int]], position: int, cursor: QTextCursor) -> str:
        """The text one key inserted right at the ghost's position, or "" if it did anything else."""
        if len(edits) != 1 or cursor.hasSelection():
            return ""
        start, removed, added = edits[0]
        if start != position or removed or not added or cursor.position() != position + added:
            return ""
        inserted = QTextCursor(self._editor.document())
        inserted.setPosition(position)
        inserted.setPosition(position + added, QTextCursor.MoveMode.KeepAnchor)
        return inserted.selection().toPlainText()
