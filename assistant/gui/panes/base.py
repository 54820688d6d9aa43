"""What every pane offers the main window: its actions (with shortcuts), Stop, and settings changes."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QWidget

from assistant.core.settings import AppSettings
from assistant.gui.worker import AiClient


class Pane(QWidget):
    """Base of the editor, chat and code panes.

    The main window puts ``pane_actions()`` in a menu titled ``menu_title`` (and enables them only while the pane
    is shown), routes Esc to ``stop()``, and calls ``apply_settings()`` when the user changes settings.

    Signals:
        statusMessage(text): a short sentence for the status bar ("Summarizing part 2 of 9", an error).
    """

    statusMessage = Signal(str)
    menu_title = "Assist"

    def __init__(self, client: AiClient, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.client = client
        self.settings = settings

    def pane_actions(self) -> list[QAction]:
        return []

    def stop(self) -> None:
        """Stop this pane's running generation (Esc, the Stop button)."""

    def apply_settings(self, settings: AppSettings) -> None:
        self.settings = settings
