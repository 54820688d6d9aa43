"""Fitting text into the model's context window, and splitting text that cannot fit.

Everything here takes a token counter (a plain callable) so it stays free of torch and works with any tokenizer.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from assistant.core.errors import InputError

TokenCounter = Callable[[str], int]

_WORD_START = re.compile(r"(?<=\s)\S")


def keep_newest(text: str, fits: Callable[[str], bool]) -> str:
    """The longest tail of ``text`` that starts at a word boundary and still fits; "" when none does.

    Binary search over word starts, so a 20,000-word text costs about 15 token counts, not 20,000.
    """
    if fits(text):
        return text
    starts = [match.start() for match in _WORD_START.finditer(text)]
    low, high = 0, len(starts) - 1
    best = ""
    while low <= high:
        middle = (low + high) // 2
        candidate = text[starts[middle] :]
        if fits(candidate):
            best = candidate
            high = middle - 1
        else:
            low = middle + 1
    return best


_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])[\"'”’)\]]*\s+")


def _pieces(text: str, pattern: re.Pattern[str]) -> list[str]:
    """Split keeping the separators attached, so joining the pieces gives back the text."""
    pieces: list[str] = []
    last = 0
    for match in pattern.finditer(text):
        pieces.append(text[last : match.end()])
        last = match.end()
    if last < len(text):
        pieces.append(text[last:])
    return [piece for piece in pieces if piece]


def split_into_chunks(text: str, max_tokens: int, count: TokenCounter) -> list[str]:
    """Split ``text`` into consecutive chunks of at most ``max_tokens`` tokens each.

    Cuts fall between paragraphs where possible, then between sentences, then between words; a single word longer
    than the limit is cut by characters. Joining the chunks gives back the whole text.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    if count(text) <= max_tokens:
        return [text] if text else []
    levels = [_PARAGRAPH_BREAK, _SENTENCE_END, re.compile(r"(?<=\s)(?=\S)")]
    return _split(text, max_tokens, count, levels)


def _split(text: str, max_tokens: int, count: TokenCounter, levels: list[re.Pattern[str]]) -> list[str]:
    if count(text) <= max_tokens:
        return [text]
    if not levels:
        middle = len(text) // 2
        return _split(text[:middle], max_tokens, count, []) + _split(text[middle:], max_tokens, count, [])
    pieces = _pieces(text, levels[0])
    if len(pieces) <= 1:
        return _split(text, max_tokens, count, levels[1:])
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        if count(piece) > max_tokens:
            if current:
                chunks.append(current)
                current = ""
            chunks.extend(_split(piece, max_tokens, count, levels[1:]))
            continue
        candidate = current + piece
        if current and count(candidate) > max_tokens:
            chunks.append(current)
            current = piece
        else:
            current = candidate
    if current:
        chunks.append(current)
    return chunks


def require_fit(text_tokens: int, limit: int, what: str) -> None:
    """Raise InputError when a text that must be used whole (a selection to rewrite) cannot fit."""
    if text_tokens > limit:
        raise InputError(
            f"{what} is too long for this model ({text_tokens:,} tokens; at most {max(limit, 0):,} fit). "
            "Select a shorter passage, or lower the maximum answer length."
        )
