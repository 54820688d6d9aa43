"""Knowing which programming language a piece of code is in, through Pygments' lexer registry."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    name: str
    """Human name for prompts: "Python", "JavaScript"."""
    fence: str
    """Markdown code-fence tag: "python", "javascript"."""


PLAIN = Language("plain text", "text")


def language_by_name(name: str) -> Language:
    """A language from what a user typed ("py", "python", "C++"); unknown names are kept as given."""
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    try:
        lexer = get_lexer_by_name(name.strip().lower())
    except ClassNotFound:
        return Language(name.strip(), name.strip().lower().replace(" ", ""))
    return Language(lexer.name, lexer.aliases[0] if lexer.aliases else name.lower())


def language_for_file(filename: str) -> Language | None:
    from pygments.lexers import get_lexer_for_filename
    from pygments.util import ClassNotFound

    try:
        lexer = get_lexer_for_filename(filename)
    except ClassNotFound:
        return None
    return Language(lexer.name, lexer.aliases[0] if lexer.aliases else lexer.name.lower())


def guess_language(code: str, filename: str | None = None) -> Language:
    """The file extension wins; otherwise Pygments guesses from the text, and plain text when unsure."""
    if filename:
        by_file = language_for_file(filename)
        if by_file is not None:
            return by_file
    from pygments.lexers import guess_lexer
    from pygments.util import ClassNotFound

    try:
        lexer = guess_lexer(code)
    except ClassNotFound:
        return PLAIN
    if lexer.name.lower() in ("text only", "plain text"):
        return PLAIN
    return Language(lexer.name, lexer.aliases[0] if lexer.aliases else lexer.name.lower())
