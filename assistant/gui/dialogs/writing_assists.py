"""The dialogs that set up the editor's writing assists: a poem's theme and form, a rewrite's style, a translation's
target language."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLineEdit, QWidget

from assistant.core.prompts import POEM_FORMS, REWRITE_STYLES, PoemRequest
from assistant.gui.util import named

TRANSLATION_LANGUAGES = (
    "English", "Spanish", "French", "German", "Italian", "Portuguese", "Dutch", "Polish", "Swedish", "Danish",
    "Norwegian", "Finnish", "Czech", "Greek", "Russian", "Ukrainian", "Turkish", "Arabic", "Hebrew", "Hindi",
    "Chinese", "Japanese", "Korean", "Indonesian", "Vietnamese",
)  # fmt: skip
"""Offered in the Translate dialog; any other language can be typed."""

CUSTOM_STYLE = "custom"
"""The rewrite style that takes the user's own instruction."""


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
        self.language_input.addItems(list(TRANSLATION_LANGUAGES))
        self.buttons = _ok_cancel(self, "Translate")
        form = QFormLayout(self)
        form.addRow("Into:", self.language_input)
        form.addRow(self.buttons)
        self.language_input.currentTextChanged.connect(
            lambda text: self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(bool(text.strip()))
        )

    def language(self) -> str:
        return self.language_input.currentText().strip()
