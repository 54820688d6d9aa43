"""Small helpers shared by the GUI modules."""

from __future__ import annotations

from typing import TypeVar

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QWidget

ObjectT = TypeVar("ObjectT", bound=QObject)


def named(widget: ObjectT, name: str, tip: str = "") -> ObjectT:
    """Give a widget the stable object name that tests and accessibility tools look it up by (and a tooltip)."""
    widget.setObjectName(name)
    if tip and isinstance(widget, QWidget):
        widget.setToolTip(tip)
    return widget
