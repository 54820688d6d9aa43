"""Opening and saving as a writer does it: encodings kept, bad files refused, nothing typed ever lost."""

from __future__ import annotations

import codecs
import json
from pathlib import Path

import pytest
from PySide6.QtWidgets import QPlainTextEdit

from assistant.core.recovery import RecoveryStore
from assistant.gui.documents import DocumentController


class ScriptedPrompter:
    """Answers the controller's questions like a user would, and remembers what it was told."""

    def __init__(self, confirm: bool = True, save_choice: str = "save", save_path: str | None = None) -> None:
        self.confirm_answer = confirm
        self.save_choice = save_choice
        self.save_path_answer = save_path
        self.open_path_answer: str | None = None
        self.warnings: list[str] = []
        self.questions: list[str] = []

    def warn(self, _title: str, message: str) -> None:
        self.warnings.append(message)

    notify = warn

    def confirm(self, _title: str, message: str) -> bool:
        self.questions.append(message)
        return self.confirm_answer

    def save_discard_cancel(self, _title: str, message: str) -> str:
        self.questions.append(message)
        return self.save_choice

    def open_path(self, _title: str, _filter: str) -> str | None:
        return self.open_path_answer

    def save_path(self, _title: str, _suggested: str, _filter: str) -> str | None:
        return self.save_path_answer


@pytest.fixture
def editor(qtbot) -> QPlainTextEdit:
    widget = QPlainTextEdit()
    qtbot.addWidget(widget)
    return widget


def controller(editor: QPlainTextEdit, prompter: ScriptedPrompter, tmp_path: Path, metadata=None):
    store = RecoveryStore(tmp_path / "recovery")
    meta = metadata if metadata is not None else {}
    return DocumentController(
        editor, "editor", prompter, store, get_metadata=lambda: dict(meta), set_metadata=lambda data: meta.update(data)
    )


def test_open_edit_save_keeps_the_files_encoding(editor, tmp_path: Path) -> None:
    path = tmp_path / "letter.txt"
    path.write_bytes(codecs.BOM_UTF16_LE + "Dear Zoë,\n".encode("utf-16-le"))
    document = controller(editor, ScriptedPrompter(), tmp_path)
    assert document.open_path(path)
    assert editor.toPlainText() == "Dear Zoë,\n" and not document.modified
    editor.appendPlainText("See you soon.")
    assert document.modified
    assert document.save()
    assert path.read_bytes().startswith(codecs.BOM_UTF16_LE)
    assert path.read_text(encoding="utf-16") == "Dear Zoë,\n\nSee you soon."
    assert not document.modified


def test_legacy_encoding_is_confirmed_before_opening(editor, tmp_path: Path) -> None:
    path = tmp_path / "old.txt"
    path.write_bytes("naïve café".encode("cp1252"))
    refusing = ScriptedPrompter(confirm=False)
    document = controller(editor, refusing, tmp_path)
    editor.setPlainText("my current text")
    assert not document.open_path(path, ask_to_save=False)
    assert editor.toPlainText() == "my current text", "declining keeps the current text"
    assert "Windows-1252" in refusing.questions[0]
    document.prompter = ScriptedPrompter(confirm=True)
    assert document.open_path(path, ask_to_save=False)
    assert editor.toPlainText() == "naïve café"
    document.save()
    assert path.read_bytes() == "naïve café".encode("cp1252")


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"\x00\x01\x02binary\x00" * 100, "binary file"), (b"x" * (21 * 1024 * 1024), "over 20.0 MB")],
)
def test_bad_files_are_refused_and_the_current_text_is_kept(editor, tmp_path, content, message) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    prompter = ScriptedPrompter()
    document = controller(editor, prompter, tmp_path)
    editor.setPlainText("keep me")
    assert not document.open_path(path, ask_to_save=False)
    assert editor.toPlainText() == "keep me"
    assert message in prompter.warnings[0]


def test_unsaved_changes_prompt_can_cancel_save_or_discard(editor, tmp_path: Path) -> None:
    target = tmp_path / "draft.md"
    prompter = ScriptedPrompter(save_choice="cancel", save_path=str(target))
    document = controller(editor, prompter, tmp_path)
    editor.insertPlainText("unsaved words")
    assert not document.new(), "Cancel keeps the document"
    assert editor.toPlainText() == "unsaved words"
    prompter.save_choice = "save"
    assert document.new()
    assert target.read_text(encoding="utf-8") == "unsaved words"
    editor.insertPlainText("throwaway")
    prompter.save_choice = "discard"
    assert document.new() and editor.toPlainText() == ""


def test_story_memory_is_saved_beside_the_document(editor, tmp_path: Path) -> None:
    metadata = {"memory": "Mira maps the coast.", "authors_note": ""}
    target = tmp_path / "chapter.md"
    document = controller(editor, ScriptedPrompter(save_path=str(target)), tmp_path, metadata)
    editor.setPlainText("Chapter one.")
    assert document.save_as()
    sidecar = tmp_path / "chapter.md.penwright.json"
    assert json.loads(sidecar.read_text(encoding="utf-8")) == {"memory": "Mira maps the coast."}
    metadata.clear()
    other = controller(QPlainTextEdit(), ScriptedPrompter(), tmp_path, metadata)
    assert other.open_path(target)
    assert metadata == {"memory": "Mira maps the coast."}


def test_failed_save_keeps_the_text_and_says_why(editor, tmp_path: Path) -> None:
    not_a_folder = tmp_path / "plain-file"
    not_a_folder.write_text("x")
    prompter = ScriptedPrompter(save_path=str(not_a_folder / "a.txt"))
    document = controller(editor, prompter, tmp_path)
    editor.insertPlainText("precious")
    assert not document.save_as()
    assert "could not be saved" in prompter.warnings[0]
    assert document.modified and editor.toPlainText() == "precious"


def test_autosave_snapshot_follows_edits_and_disappears_on_save(editor, tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    document = controller(editor, ScriptedPrompter(save_path=str(target)), tmp_path)
    assert not document.autosave(), "nothing typed, nothing to snapshot"
    editor.insertPlainText("typed but not saved")
    assert document.autosave()
    (snapshot,) = document.recovery.leftovers()
    assert snapshot.text == "typed but not saved" and snapshot.pane == "editor"
    assert not document.autosave(), "unchanged text is not written again"
    document.save_as()
    assert document.recovery.leftovers() == []
