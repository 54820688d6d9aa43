"""Code colours: Pygments lexers chosen by language or file name, and a Qt highlighter that lexes one line at a time.

The code pane's editor and its fix diff use :class:`PygmentsHighlighter`; it carries the lexer's state from line to
line, so a docstring or a block comment keeps its colour while only the edited line is lexed again.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import os
from typing import Any

from pygments.lexer import ExtendedRegexLexer, Lexer, RegexLexer
from pygments.lexers import find_lexer_class_for_filename, get_lexer_by_name
from pygments.lexers.special import TextLexer
from pygments.style import StyleMeta
from pygments.styles import get_style_by_name
from pygments.token import Error, Token, Whitespace, _TokenType
from pygments.util import ClassNotFound
from PySide6.QtGui import QColor, QFont, QSyntaxHighlighter, QTextCharFormat, QTextDocument

from assistant.core.languages import COMMON_LANGUAGES

log = logging.getLogger(__name__)

LIGHT_STYLE = "default"
DARK_STYLE = "github-dark"
ROOT_STACK: tuple[str, ...] = ("root",)


@functools.lru_cache(maxsize=64)
def lexer_for_alias(alias: str) -> Lexer:
    """One shared lexer per language: creating a Pygments lexer compiles its regexes, so it is kept."""
    try:
        return get_lexer_by_name(alias)
    except ClassNotFound:
        return TextLexer()


@functools.lru_cache(maxsize=256)
def lexer_for_file_name(name: str) -> Lexer | None:
    """The lexer for a file name ("x.rs" -> Rust), or None when the name says nothing.

    The common languages win where a pattern is shared: Pygments alone calls "query.sql" Transact-SQL.
    """
    base_name = os.path.basename(name)
    for _label, alias in COMMON_LANGUAGES:
        lexer = lexer_for_alias(alias)
        if alias != "text" and any(fnmatch.fnmatchcase(base_name, pattern) for pattern in lexer.filenames):
            return lexer
    lexer_class = find_lexer_class_for_filename(base_name)
    if lexer_class is None or not lexer_class.aliases:
        return None
    return lexer_for_alias(lexer_class.aliases[0])


def lexer_display_name(lexer: Lexer) -> str:
    return "plain text" if isinstance(lexer, TextLexer) else str(lexer.name)


TokenList = list[tuple[int, Any, str]]


def _carries_state(lexer: Lexer) -> bool:
    """Whether the lexer is a plain state machine whose state can be carried from one line to the next."""
    return isinstance(lexer, RegexLexer) and not isinstance(lexer, ExtendedRegexLexer)


def lex_line(lexer: Lexer, text: str, stack: tuple[str, ...] = ROOT_STACK) -> tuple[TokenList, tuple[str, ...]]:
    """Tokens of one line, starting in state ``stack``, and the lexer's state stack where the line ends.

    Pygments never reports the state it ends in, yet that is what lets a docstring or a block comment continue on
    the next line when lines are highlighted one at a time. This is ``RegexLexer.get_tokens_unprocessed``'s loop,
    unchanged except that it starts from ``stack`` and returns the final stack. Lexers that are not plain state
    machines are lexed line by line without carried state.
    """
    if not _carries_state(lexer):
        return list(lexer.get_tokens_unprocessed(text)), ROOT_STACK
    tokendefs = lexer._tokens
    statestack = list(stack) if stack and stack[-1] in tokendefs else ["root"]
    statetokens = tokendefs[statestack[-1]]
    tokens: TokenList = []
    position = 0
    while True:
        for rexmatch, action, new_state in statetokens:
            match = rexmatch(text, position)
            if not match:
                continue
            if action is not None:
                if type(action) is _TokenType:
                    tokens.append((position, action, match.group()))
                else:
                    tokens.extend(action(lexer, match))
            position = match.end()
            if new_state is not None:
                if isinstance(new_state, tuple):
                    for state in new_state:
                        if state == "#pop":
                            if len(statestack) > 1:
                                statestack.pop()
                        elif state == "#push":
                            statestack.append(statestack[-1])
                        else:
                            statestack.append(state)
                elif isinstance(new_state, int):
                    if abs(new_state) >= len(statestack):
                        del statestack[1:]
                    else:
                        del statestack[new_state:]
                elif new_state == "#push":
                    statestack.append(statestack[-1])
                statetokens = tokendefs[statestack[-1]]
            break
        else:
            if position >= len(text):
                break
            if text[position] == "\n":
                statestack = ["root"]
                statetokens = tokendefs["root"]
                tokens.append((position, Whitespace, "\n"))
            else:
                tokens.append((position, Error, text[position]))
            position += 1
    return tokens, tuple(statestack)


def _utf16_offsets(text: str) -> list[int]:
    """Qt counts positions in UTF-16 units; Python in code points. Entry i is code point i's Qt position."""
    offsets = [0]
    for character in text:
        offsets.append(offsets[-1] + (2 if ord(character) > 0xFFFF else 1))
    return offsets


class PygmentsHighlighter(QSyntaxHighlighter):
    """Colours code with Pygments one block (line) at a time, carrying the lexer's state between lines.

    Lexing only the changed line keeps typing instant in long files. The lexer's state stack where a line ends (in
    a docstring, in a block comment) is stored as the block's state, so Qt re-highlights the following lines only
    when that state changes. Lines ending in the root state keep Qt's default state (-1) and neighbouring tokens of
    one look share one range, so a line costs as few calls into Qt as it can. ``blocks_highlighted`` counts the
    lines lexed, for tests and profiling.
    """

    def __init__(self, document: QTextDocument, lexer: Lexer | None = None, dark: bool = False) -> None:
        super().__init__(document)
        self._lexer: Lexer = lexer or TextLexer()
        self._dark = dark
        self._style: StyleMeta = get_style_by_name(DARK_STYLE if dark else LIGHT_STYLE)
        self._formats: dict[Any, QTextCharFormat | None] = {}
        self._formats_by_look: dict[tuple[Any, ...], QTextCharFormat] = {}
        self._stacks: list[tuple[str, ...]] = []
        self._stack_ids: dict[tuple[str, ...], int] = {ROOT_STACK: -1}
        self.blocks_highlighted = 0

    @property
    def lexer(self) -> Lexer:
        return self._lexer

    @property
    def style(self) -> StyleMeta:
        """The Pygments style in use; the editor takes its background and text colours from it."""
        return self._style

    @property
    def dark(self) -> bool:
        return self._dark

    def set_lexer(self, lexer: Lexer) -> None:
        if lexer is self._lexer:
            return
        self._lexer = lexer
        self._stacks = []
        self._stack_ids = {ROOT_STACK: -1}
        self.rehighlight()

    def set_dark(self, dark: bool) -> None:
        """Switch between the light and the dark Pygments style."""
        if dark == self._dark:
            return
        self._dark = dark
        self._style = get_style_by_name(DARK_STYLE if dark else LIGHT_STYLE)
        self._formats.clear()
        self._formats_by_look.clear()
        self.rehighlight()

    def default_colors(self) -> tuple[QColor, QColor]:
        """The style's background and plain-text colours."""
        background = QColor(self._style.background_color or ("#0d1117" if self._dark else "#ffffff"))
        text = self._style.style_for_token(Token.Text)["color"] or self._style.style_for_token(Token)["color"]
        foreground = QColor(f"#{text}") if text else QColor("#e6edf3" if self._dark else "#000000")
        return background, foreground

    def format_for(self, token_type: Any) -> QTextCharFormat | None:
        """The character format for a token type, or None where the editor's plain colours already fit."""
        if token_type in self._formats:
            return self._formats[token_type]
        char_format: QTextCharFormat | None = None
        if token_type not in Error and token_type not in Token.Text:  # half-typed code should not flash red
            style = self._style.style_for_token(token_type)
            look = (style["color"], style["bgcolor"], style["bold"], style["italic"], style["underline"])
            if any(look):
                char_format = self._formats_by_look.get(look)
                if char_format is None:
                    char_format = self._make_format(*look)
                    self._formats_by_look[look] = char_format
        self._formats[token_type] = char_format
        return char_format

    @staticmethod
    def _make_format(color: str, background: str, bold: bool, italic: bool, underline: bool) -> QTextCharFormat:
        char_format = QTextCharFormat()
        if color:
            char_format.setForeground(QColor(f"#{color}"))
        if background:
            char_format.setBackground(QColor(f"#{background}"))
        if bold:
            char_format.setFontWeight(QFont.Weight.Bold)
        if italic:
            char_format.setFontItalic(True)
        if underline:
            char_format.setFontUnderline(True)
        return char_format

    def _stack_id(self, stack: tuple[str, ...]) -> int:
        """Block states are ints, so each distinct lexer stack gets a number (the root state is Qt's -1)."""
        number = self._stack_ids.get(stack)
        if number is None:
            number = len(self._stacks)
            self._stacks.append(stack)
            self._stack_ids[stack] = number
        return number

    def format_ranges(self, text: str) -> tuple[list[tuple[int, int, QTextCharFormat]], int]:
        """The coloured ranges of one line (code points) and the block state it ends in."""
        previous = self.previousBlockState()
        stack = self._stacks[previous] if 0 <= previous < len(self._stacks) else ROOT_STACK
        tokens, end_stack = lex_line(self._lexer, text + "\n", stack)
        ranges: list[tuple[int, int, QTextCharFormat]] = []
        for start, token_type, value in tokens:
            if start >= len(text):
                break
            char_format = self.format_for(token_type)
            if char_format is None or not value:
                continue
            end = min(start + len(value), len(text))
            if ranges and ranges[-1][1] == start and ranges[-1][2] is char_format:
                ranges[-1] = (ranges[-1][0], end, char_format)
            else:
                ranges.append((start, end, char_format))
        return ranges, self._stack_id(end_stack)

    def highlightBlock(self, text: str) -> None:  # noqa: N802 (Qt's name)
        self.blocks_highlighted += 1
        if isinstance(self._lexer, TextLexer):
            return
        try:
            ranges, state = self.format_ranges(text)
        except Exception:  # a lexer bug must never break typing: leave the line plain
            log.debug("Pygments failed on a line", exc_info=True)
            ranges, state = [], -1
        offsets = None if text.isascii() else _utf16_offsets(text)
        for start, end, char_format in ranges:
            if offsets is None:
                self.setFormat(start, end - start, char_format)
            else:
                self.setFormat(offsets[start], offsets[end] - offsets[start], char_format)
        if self.currentBlockState() != state:
            self.setCurrentBlockState(state)
