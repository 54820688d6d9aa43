"""Deprecated: the inline-suggestion rules live in :mod:`assistant.core.completion_rules` now.

What is left here are the names the GUI still imports while it is being restructured; each delegates to the
rulebook, so there is one set of rules. Delete this module once ``gui/panes/ghost_text.py`` imports
``Cursor`` and ``should_suggest`` from ``completion_rules``.
"""

from __future__ import annotations

from assistant.core.completion_rules import MAX_CODE_LINES, Cursor, cut, should_suggest

CodeContext = Cursor
"""Deprecated name of :class:`assistant.core.completion_rules.Cursor` (``from_text``, ``mid_line`` are the same)."""

__all__ = ["MAX_CODE_LINES", "CodeContext", "cut_code", "should_suggest_code"]


def should_suggest_code(context: Cursor) -> bool:
    """Deprecated: ``completion_rules.should_suggest(cursor, "code")``."""
    return should_suggest(context, "code")


def cut_code(text: str, context: Cursor, final: bool = False) -> tuple[str, bool]:
    """Deprecated: ``completion_rules.cut(text, cursor, "code", final)``; returns its text and stop."""
    verdict = cut(text, context, "code", final)
    return verdict.text, verdict.stop
