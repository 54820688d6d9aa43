"""Knowing which programming language a piece of code is in: by file name, by telltale lines, then by Pygments.

:func:`guess_language` is the one guess used everywhere (code prompts, the code pane's Auto language).
"""

from __future__ import annotations

import re
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


GUESS_SAMPLE_CHARS = 4000
"""Only the start of a long text is looked at: a few thousand characters decide as well as the whole file."""

COMMON_LANGUAGES: tuple[tuple[str, str], ...] = (
    ("Python", "python"), ("JavaScript", "javascript"), ("TypeScript", "typescript"), ("C", "c"), ("C++", "cpp"),
    ("C#", "csharp"), ("Rust", "rust"), ("Go", "go"), ("Java", "java"), ("Kotlin", "kotlin"), ("Swift", "swift"),
    ("Ruby", "ruby"), ("PHP", "php"), ("HTML", "html"), ("CSS", "css"), ("JSON", "json"), ("YAML", "yaml"),
    ("TOML", "toml"), ("Markdown", "markdown"), ("Shell", "bash"), ("SQL", "sql"), ("Plain text", "text"),
)  # fmt: skip
"""The languages a guess may land on: (label, Pygments alias). The code pane offers the same list by hand."""

_GUESS_RULES: tuple[tuple[str, str], ...] = (
    ("python", r"^[ \t]*(def|class)[ \t]+\w+.*:[ \t]*$"),
    ("python", r"^[ \t]*(import [\w.]+|from [\w.]+ import )"),
    ("python", r"^[ \t]*(elif|else|try|except|finally|with|for|while|if)\b.*:[ \t]*$"),
    ("python", r"\bself\.\w+|\bprint\(|\bNone\b|\bTrue\b"),
    ("rust", r"\bfn[ \t]+\w+[ \t]*[<(]"),
    ("rust", r"\blet[ \t]+mut\b|\bimpl\b|\bpub[ \t]+(fn|struct|enum)\b|\w+!\("),
    ("go", r"^package[ \t]+\w+[ \t]*$"),
    ("go", r"\bfunc[ \t]+(\([^)]*\)[ \t]*)?\w+\(|:=|\bfmt\.\w+\("),
    ("c", r"^[ \t]*#[ \t]*include[ \t]*[<\"]\w+\.h[>\"]"),
    ("c", r"\b(int|void|char|double|unsigned)[ \t]+\**\w+[ \t]*\([^)]*\)|\bprintf\("),
    ("cpp", r"^[ \t]*#[ \t]*include[ \t]*<\w+>|\bstd::|\bnamespace[ \t]+\w+|\btemplate[ \t]*<|\bcout[ \t]*<<"),
    ("java", r"\bpublic[ \t]+(static[ \t]+)?(class|void|final|interface)\b|\bSystem\.out\.|^import[ \t]+java\."),
    ("csharp", r"^[ \t]*using[ \t]+System\b|\bConsole\.Write|\bnamespace[ \t]+\w+(\.\w+)+"),
    ("javascript", r"\b(const|let|var)[ \t]+\w+[ \t]*=|\bfunction\b[ \t]*\w*[ \t]*\(|=>|\bconsole\.log\("),
    ("typescript", r"\w[ \t]*:[ \t]*(string|number|boolean|any|void)\b"),
    ("typescript", r"^[ \t]*(export[ \t]+)?(interface|type)[ \t]+\w+"),
    ("html", r"<!DOCTYPE html|<html\b|<(div|span|body|head|p|a)\b[^>]*>|</(div|span|body|html|p|a)>"),
    ("css", r"^[ \t]*[.#]?[\w-]+([ \t]*[,>][ \t]*[.#]?[\w-]+)*[ \t]*\{[ \t]*$"),
    ("css", r"^[ \t]*[\w-]+[ \t]*:[ \t]*[^;{(]+;[ \t]*$"),
    ("json", r"^[ \t]*\"[^\"]+\"[ \t]*:[ \t]*[\[{\"\d]"),
    ("bash", r"^#!.*\b(ba|z)?sh\b|^[ \t]*(echo|export|fi|done|esac)\b|\$\{\w+\}"),
    ("sql", r"(?i)^[ \t]*(select\b.+\bfrom|insert[ \t]+into|create[ \t]+table|delete[ \t]+from)\b"),
    ("sql", r"(?i)^[ \t]*update[ \t]+\w+[ \t]+set\b"),
    ("ruby", r"^[ \t]*(puts|require|module)\b|^[ \t]*end[ \t]*$|\bdo[ \t]*\|\w+\|"),
    ("php", r"<\?php|\$\w+[ \t]*=.*;[ \t]*$"),
)  # fmt: skip
_COMPILED_GUESS_RULES = tuple((alias, re.compile(pattern, re.MULTILINE)) for alias, pattern in _GUESS_RULES)
_GUESS_SUPERSETS = {"typescript": "javascript", "cpp": "c"}
"""TypeScript code also looks like JavaScript, and C++ like C: the superset gets the base's points too."""


def guess_language(code: str, filename: str | None = None) -> Language:
    """The file extension wins; otherwise telltale lines of the common languages, then Pygments; plain text if unsure.

    Pygments' own guess is unreliable on code (it calls a small Python function "Tera Term macro"), so the common
    languages are scored by telltale lines first, and a Pygments guess is taken only when it is one of them.
    """
    if filename:
        by_file = language_for_file(filename)
        if by_file is not None:
            return by_file
    sample = code[:GUESS_SAMPLE_CHARS]
    if not sample.strip():
        return PLAIN
    labels = {alias: label for label, alias in COMMON_LANGUAGES}
    scores = dict.fromkeys(labels, 0)
    for alias, pattern in _COMPILED_GUESS_RULES:
        scores[alias] += len(pattern.findall(sample))
    for superset, base in _GUESS_SUPERSETS.items():
        if scores[superset]:
            scores[superset] += scores[base]
    best = max(scores, key=lambda alias: scores[alias])
    if scores[best] > 0:
        return Language(labels[best], best)
    fallback = _pygments_guess(sample)
    return Language(labels[fallback], fallback) if fallback in labels and fallback != PLAIN.fence else PLAIN


def _pygments_guess(sample: str) -> str:
    """Pygments' alias for the sample, or "" when it has none."""
    from pygments.lexers import guess_lexer
    from pygments.util import ClassNotFound

    try:
        lexer = guess_lexer(sample)
    except ClassNotFound:
        return ""
    return str(lexer.aliases[0]) if lexer.aliases else ""
