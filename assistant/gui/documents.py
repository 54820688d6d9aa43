"""The file side of a text pane: open, save, save as, unsaved-changes prompts and autosave snapshots.

The panes only edit text; this controller owns the path, the encoding and the recovery snapshot of one
QPlainTextEdit. Questions to the user go through a :class:`Prompter`, so tests can answer them without dialogs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QFileDialog, QMessageBox, QPlainTextEdit, QWidget

from assistant.core.documents import LEGACY_ENCODINGS, read_text_file, write_text_atomic
from assistant.core.errors import InputError
from assistant.core.recovery import RecoveryStore, Snapshot

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".penwright.json"
"""Story memory and author's note live beside the document: ``chapter.md`` -> ``chapter.md.penwright.json``."""


class Prompter:
    """Asks the user with real dialogs; tests substitute an object with the same methods."""

    def __init__(self, parent: QWidget) -> None:
        self.parent = parent

    def warn(self, title: str, message: str) -> None:
        QMessageBox.warning(self.parent, title, message)

    def notify(self, title: str, message: str) -> None:
        """A warning that does not block: the window (and a screenshot run) carries on behind it."""
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self.parent)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def confirm(self, title: str, message: str) -> bool:
        answer = QMessageBox.question(self.parent, title, message)
        return answer == QMessageBox.StandardButton.Yes

    def save_discard_cancel(self, title: str, message: str) -> str:
        """Returns "save", "discard" or "cancel"."""
        buttons = (
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel
        )
        answer = QMessageBox.question(self.parent, title, message, buttons, QMessageBox.StandardButton.Save)
        if answer == QMessageBox.StandardButton.Save:
            return "save"
        if answer == QMessageBox.StandardButton.Discard:
            return "discard"
        return "cancel"

    def open_path(self, title: str, file_filter: str) -> str | None:
        path, _ = QFileDialog.getOpenFileName(self.parent, title, "", file_filter)
        return path or None

    def save_path(self, title: str, suggested: str, file_filter: str) -> str | None:
        path, _ = QFileDialog.getSaveFileName(self.parent, title, suggested, file_filter)
        return path or None


class DocumentController(QObject):
    """Path, encoding, modified state and autosave of the document shown in one QPlainTextEdit.

    Signals:
        titleChanged(): the file name or the modified state changed (for the tab and window title).
        opened(path): a file was opened or saved under a new name (for Recent files).
    """

    titleChanged = Signal()
    opened = Signal(str)

    def __init__(
        self,
        editor: QPlainTextEdit,
        kind: str,
        prompter: Prompter,
        recovery: RecoveryStore,
        file_filter: str = "Text files (*.txt *.md *.markdown);;All files (*)",
        get_metadata: Callable[[], dict[str, Any]] | None = None,
        set_metadata: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        super().__init__(editor)
        self.editor = editor
        self.kind = kind
        self.prompter = prompter
        self.recovery = recovery
        self.file_filter = file_filter
        self._get_metadata = get_metadata
        self._set_metadata = set_metadata
        self.path: Path | None = None
        self.encoding = "utf-8"
        self.document_id = RecoveryStore.new_document_id()
        self._snapshot_stale = False
        self._on_file_changed: list[Callable[[Path | None], None]] = []
        editor.document().modificationChanged.connect(lambda _modified: self.titleChanged.emit())
        editor.document().contentsChanged.connect(self._mark_stale)

    # --- state ---------------------------------------------------------------------------------------------

    @property
    def modified(self) -> bool:
        return self.editor.document().isModified()

    @property
    def display_name(self) -> str:
        return self.path.name if self.path else "Untitled"

    def on_file_changed(self, callback: Callable[[Path | None], None]) -> None:
        """Called with the new path after New, Open and Save As (the code pane picks its language from it)."""
        self._on_file_changed.append(callback)

    def _mark_stale(self) -> None:
        self._snapshot_stale = True

    def _set_path(self, path: Path | None) -> None:
        self.path = path
        for callback in self._on_file_changed:
            callback(path)
        self.titleChanged.emit()

    # --- actions -------------------------------------------------------------------------------------------

    def new(self) -> bool:
        if not self.maybe_save():
            return False
        self.recovery.discard(self.document_id)
        self.document_id = RecoveryStore.new_document_id()
        self.editor.setPlainText("")
        self.editor.document().setModified(False)
        self.encoding = "utf-8"
        if self._set_metadata:
            self._set_metadata({})
        self._snapshot_stale = False
        self._set_path(None)
        return True

    def ask_and_open(self) -> bool:
        if not self.maybe_save():
            return False
        chosen = self.prompter.open_path("Open", self.file_filter)
        return self.open_path(chosen, ask_to_save=False) if chosen else False

    def open_path(self, path: str | Path, ask_to_save: bool = True) -> bool:
        """Open a file, or explain why not (binary, too large, unreadable); the current text is never lost."""
        if ask_to_save and not self.maybe_save():
            return False
        file_path = Path(path).expanduser()
        try:
            decoded = read_text_file(file_path)
        except InputError as error:
            self.prompter.warn("Cannot open file", str(error))
            return False
        if decoded.is_legacy and not self.prompter.confirm(
            "Confirm encoding",
            f"'{file_path.name}' is not UTF-8 text. Open it as Windows-1252 (Western European)? "
            "It will be saved back in the same encoding.",
        ):
            return False
        self.recovery.discard(self.document_id)
        self.document_id = RecoveryStore.new_document_id()
        self.editor.setPlainText(decoded.text)
        self.editor.document().setModified(False)
        self.encoding = "cp1252" if decoded.encoding in LEGACY_ENCODINGS else decoded.encoding
        if self._set_metadata:
            self._set_metadata(self._read_sidecar(file_path))
        self._snapshot_stale = False
        self._set_path(file_path.resolve())
        self.opened.emit(str(self.path))
        return True

    def save(self) -> bool:
        if self.path is None:
            return self.save_as()
        return self._write(self.path)

    def save_as(self) -> bool:
        suggested = str(self.path) if self.path else ("untitled.txt" if self.kind == "editor" else "untitled.py")
        chosen = self.prompter.save_path("Save As", suggested, self.file_filter)
        if not chosen:
            return False
        if not self._write(Path(chosen)):
            return False
        self._set_path(Path(chosen).resolve())
        self.opened.emit(str(self.path))
        return True

    def _write(self, path: Path) -> bool:
        text = self.editor.toPlainText()
        encoding = self.encoding
        try:
            text.encode(encoding)
        except UnicodeEncodeError:
            if not self.prompter.confirm(
                "Save as UTF-8?",
                f"The text has characters that {encoding} cannot store. Save '{path.name}' as UTF-8 instead?",
            ):
                return False
            encoding = "utf-8"
        try:
            write_text_atomic(path, text, encoding)
            self._write_sidecar(path)
        except OSError as error:
            self.prompter.warn("Cannot save file", f"'{path}' could not be saved: {error.strerror or error}.")
            return False
        self.encoding = encoding
        self.editor.document().setModified(False)
        self.recovery.discard(self.document_id)
        self._snapshot_stale = False
        return True

    def maybe_save(self) -> bool:
        """Ask about unsaved changes; False means the user cancelled and nothing should happen."""
        if not self.modified:
            return True
        answer = self.prompter.save_discard_cancel(
            "Unsaved changes", f"Save the changes to '{self.display_name}' before closing it?"
        )
        if answer == "save":
            return self.save()
        return answer == "discard"

    # --- sidecar and recovery ------------------------------------------------------------------------------

    def _read_sidecar(self, path: Path) -> dict[str, Any]:
        sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_sidecar(self, path: Path) -> None:
        if not self._get_metadata:
            return
        metadata = {key: value for key, value in self._get_metadata().items() if value}
        sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
        if metadata:
            write_text_atomic(sidecar, json.dumps(metadata, indent=2, ensure_ascii=False))
        elif sidecar.exists():
            sidecar.unlink()

    def metadata_changed(self) -> None:
        """Story memory or author's note changed: they belong to the document, so it needs saving."""
        self.editor.document().setModified(True)
        self._snapshot_stale = True

    def autosave(self) -> bool:
        """Write a recovery snapshot when the text changed since the last one; True when one was written."""
        if not self._snapshot_stale:
            return False
        if not self.modified:
            self.recovery.discard(self.document_id)
            self._snapshot_stale = False
            return False
        snapshot = Snapshot(
            document_id=self.document_id,
            pane=self.kind,
            text=self.editor.toPlainText(),
            path=str(self.path) if self.path else None,
            encoding=self.encoding,
            metadata=self._get_metadata() if self._get_metadata else {},
        )
        try:
            self.recovery.save(snapshot)
        except OSError as error:
            log.warning("Autosave failed: %s", error)
            return False
        self._snapshot_stale = False
        return True

    def restore(self, snapshot: Snapshot) -> None:
        """Put a crashed session's text back; it stays marked modified until the user saves it."""
        self.recovery.discard(self.document_id)
        self.document_id = snapshot.document_id
        self.editor.setPlainText(snapshot.text)
        self.encoding = snapshot.encoding
        if self._set_metadata:
            self._set_metadata(snapshot.metadata)
        self._set_path(Path(snapshot.path) if snapshot.path else None)
        self.editor.document().setModified(True)
        self._snapshot_stale = True

    def close_cleanly(self) -> None:
        """The document was saved or deliberately discarded: its recovery snapshot is no longer needed."""
        self.recovery.discard(self.document_id)
