"""Text as Qt counts and returns it: positions in UTF-16 units, selections with U+2029 for line breaks."""

from __future__ import annotations

from PySide6.QtGui import QTextCursor


def utf16_length(text: str) -> int:
    """Qt counts positions in UTF-16 units; an emoji is one Python character but two Qt positions."""
    return len(text.encode("utf-16-le")) // 2


def plain_text_of(cursor: QTextCursor) -> str:
    """A selection as plain text: Qt marks paragraph breaks in ``selectedText()`` with U+2029, not newlines."""
    return cursor.selectedText().replace("\u2029", "\n").replace("\u2028", "\n")
