"""Pure text logic of the code pane (no Qt): guessing a snippet's language, where a streamed completion ends,
pulling code out of a fenced answer, and shaping a fix like the text it replaces."""

from __future__ import annotations

import difflib
import os
import re

from assistant.core.languages import guess_language

TAB_WIDTH = 4
GUESS_SAMPLE_CHARS = 4000

LANGUAGE_CHOICES: tuple[tuple[str, str], ...] = (
    ("Python", "python"), ("JavaScript", "javascript"), ("TypeScript", "typescript"), ("C", "c"), ("C++", "cpp"),
    ("C#", "csharp"), ("Rust", "rust"), ("Go", "go"), ("Java", "java"), ("Kotlin", "kotlin"), ("Swift", "swift"),
    ("Ruby", "ruby"), ("PHP", "php"), ("HTML", "html"), ("CSS", "css"), ("JSON", "json"), ("YAML", "yaml"),
    ("TOML", "toml"), ("Markdown", "markdown"), ("Shell", "bash"), ("SQL", "sql"), ("Plain text", "text"),
)  # fmt: skip
"""The languages offered by hand in the language box: (label, Pygments alias)."""

# --- guessing the language of unnamed code ----------------------------------------------------------------------

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


def guess_code_language(code: str) -> str:
    """The Pygments alias of the likeliest common language, or "text" when nothing points anywhere.

    Pygments' own guess is unreliable on code (it calls a small Python function "Tera Term macro"), so the common
    languages are scored by telltale lines first; Pygments is asked only when none of them match.
    """
    sample = code[:GUESS_SAMPLE_CHARS]
    if not sample.strip():
        return "text"
    scores = {alias: 0 for _label, alias in LANGUAGE_CHOICES}
    for alias, pattern in _COMPILED_GUESS_RULES:
        scores[alias] += len(pattern.findall(sample))
    for superset, base in _GUESS_SUPERSETS.items():
        if scores[superset]:
            scores[superset] += scores[base]
    best = max(scores, key=lambda alias: scores[alias])
    if scores[best] > 0:
        return best
    fallback = guess_language(sample).fence
    known = {alias for _label, alias in LANGUAGE_CHOICES}
    return fallback if fallback in known else "text"


def indent_width(line: str) -> int:
    """Columns of leading whitespace, a tab counting as ``TAB_WIDTH``."""
    expanded = line.expandtabs(TAB_WIDTH)
    return len(expanded) - len(expanded.lstrip())


def leading_whitespace(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


# --- what the model wrote ---------------------------------------------------------------------------------------


def completion_extent(generated: str, cursor_line_indent: int, single_line: bool, final: bool) -> tuple[int, bool]:
    """How much of a streamed completion to keep, and whether it has reached a natural end.

    The first line continues the cursor's line and shows as it streams. In the middle of a line only that line is
    completed. Otherwise later lines are kept whole, and the completion ends where the code leaves the cursor's block:
    a line indented less than the cursor's line or than the completion's first new line (a closing bracket on it is
    kept), two blank lines in a row, or a Markdown code fence. Blank lines are kept only when code follows them.
    Unless ``final``, the last line is still arriving and is not judged yet.
    """
    lines = generated.split("\n")
    kept = len(lines[0])
    if single_line:
        return kept, len(lines) > 1
    candidates = lines[1:] if final else lines[1:-1]
    reference: int | None = None
    blank_run = 0
    seen_code = bool(lines[0].strip())
    line_end = len(lines[0])
    for line in candidates:
        line_end += 1 + len(line)
        stripped = line.strip()
        if not stripped:
            blank_run += 1
            if blank_run >= 2 and seen_code:
                return kept, True
            continue
        if stripped.startswith("```"):
            return kept, True
        indent = indent_width(line)
        if reference is None:
            reference = indent
        if indent < cursor_line_indent or indent < reference:
            return (line_end if stripped[0] in ")]}" else kept), True
        kept = line_end
        blank_run = 0
        seen_code = True
    return kept, False


def fenced_code(answer: str) -> tuple[str | None, bool]:
    """The code inside the answer's first ``` fence (so far), and whether the fence has closed.

    None while no fence has opened: the answer may still be an introduction ("Here is the code:").
    """
    lines = answer.split("\n")
    for index, line in enumerate(lines):
        if not line.lstrip().startswith("```"):
            continue
        body: list[str] = []
        for inner in lines[index + 1 :]:
            if inner.lstrip().startswith("```"):
                return "\n".join(body), True
            body.append(inner)
        return "\n".join(body), False
    return None, False


def code_lines_so_far(answer: str, final: bool) -> tuple[list[str], bool]:
    """The lines of code in a streamed answer that are certain so far, and whether the code is complete.

    The first fenced block is the code; an answer without any fence is all code once it has ended. A line still
    arriving is held back, and so are blank lines until code follows them, so the text only ever grows.
    """
    code, closed = fenced_code(answer)
    if code is None:
        if not final:
            return [], False
        code, closed = answer, True
    lines = code.split("\n")
    if not (closed or final):
        lines = lines[:-1]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return lines, closed or final


def final_code(answer: str) -> str:
    """The code of a finished answer: its first fenced block, or the whole answer when it has none."""
    code, _closed = fenced_code(answer)
    return (answer if code is None else code).strip("\n")


def _common_indent(text: str) -> str:
    indents = [leading_whitespace(line) for line in text.split("\n") if line.strip()]
    return os.path.commonprefix(indents) if indents else ""


def fit_replacement(original: str, code: str) -> str:
    """The model's code shaped like the text it replaces: the same indentation and surrounding blank lines."""
    body = code.strip("\n")
    margin = _common_indent(original)
    if margin and not _common_indent(body):
        body = "\n".join(margin + line if line.strip() else line for line in body.split("\n"))
    leading = original[: len(original) - len(original.lstrip("\n"))]
    trailing = original[len(original.rstrip()) :]
    return leading + body + trailing


def unified_diff_text(old: str, new: str, name: str) -> str:
    lines = difflib.unified_diff(
        old.splitlines(), new.splitlines(), fromfile=f"a/{name}", tofile=f"b/{name}", lineterm=""
    )
    return "\n".join(lines)
