"""Small helpers shared by the GUI modules."""

from __future__ import annotations

from typing import TypeVar

from PySide6.QtCore import QObject

ObjectT = TypeVar("ObjectT", bound=QObject)


def named(widget: ObjectT, name: str) -> ObjectT:
    """Give a widget the stable object name that tests and accessibility tools look it up by."""
    widget.setObjectName(name)
    return widget
