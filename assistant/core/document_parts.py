"""A document's own structure: the parts a synopsis summarizes one by one, with where each starts.

A writer's manuscript already says where its chapters are. We split on those headings (Markdown ``#`` lines and
setext headings underlined with ``===`` or ``---``, "Chapter 4", "CHAPTER IV", "Part Two", "Prologue", a bare "12."
or "XII." on its own line); where a document has
none we split on its scene breaks (``***``, ``* * *``, a lone ``#``), and only where it has neither into even
chunks cut between paragraphs. Headings win over scene breaks because a synopsis is read chapter by chapter: a
chapter's scenes stay together in its one summary.

Every part keeps its title and its character offsets in the document, so the GUI can jump to a part's heading.
Pure Python: no tokenizer, no torch. Parts longer than a model's context are the engine's business (it summarizes
them in pieces).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

DEFAULT_CHUNK_WORDS = 1500
"""Words per part when a document has no headings: about 2,000 tokens, which small models summarize well."""

HEADING_MAX_CHARS = 100
"""A line longer than this is prose, whatever word it starts with."""


@dataclass(frozen=True)
class Part:
    """One part of a document: ``document[start:end]`` is its heading (if any) and its body."""

    title: str
    """The heading as written ("Chapter 4: The Harbour"), or a made-up "Scene 2" / "Part 3" / "Opening"."""
    start: int
    """Offset of the heading's first character (of the body's, for a part without heading): where to jump."""
    body_start: int
    """Offset just past the heading line; equals ``start`` for parts without a heading."""
    end: int
    """Offset one past the part's last character (the next part's ``start``, or the document's length)."""
    kind: str
    """"heading", "scene" (between scene breaks), "chunk" (even split) or "opening" (text before the first heading)."""
    text: str
    """``document[start:end]``: the heading line and the body."""

    @property
    def body(self) -> str:
        """The part's text under its heading."""
        return self.text[self.body_start - self.start :]

    @property
    def is_empty(self) -> bool:
        """A heading with no words under it (a placeholder chapter): there is nothing to summarize."""
        return not re.search(r"\w", self.body)


# --- recognising headings ---------------------------------------------------------------------------------------

_NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|"
    "eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|"
    "first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|last|final"
)
_NUMBERING = rf"(?:\d{{1,4}}|[ivxlcdm]+|(?:{_NUMBER_WORDS})(?:[- ](?:{_NUMBER_WORDS}))*)"

_MARKDOWN = re.compile(r"^(#{1,6})[ \t]+(?P<title>\S.*?)[ \t]*#*[ \t]*$")
# "Chapter 4", "CHAPTER IV", "Part Two: The Return", "Chapter 3 The Road" (but not "Part two of the plan was ...").
_NUMBERED_KEYWORD = re.compile(
    rf"^(?P<key>chapter|part|book|volume|act|canto|section)\s+(?P<number>{_NUMBERING})\b\.?(?P<rest>.*)$",
    re.IGNORECASE,
)
_TITLE_AFTER_NUMBER = re.compile(r"^(?:\s*[:.\-–—)]|\s+[\dA-Z\"'“‘(]|$)")
# "Prologue", "Epilogue: Ten Years Later", and "Chapter about Lisbon." standing alone as a short paragraph.
_TITLE_KEYWORD = re.compile(
    r"^(?P<title>(?P<key>prologue|epilogue|interlude|afterword|foreword|preface|introduction|chapter)\b.*)$",
    re.IGNORECASE,
)
# "12." or "XII." alone: how many novels number their chapters. Roman numerals in capitals only ("I" counts).
_BARE_NUMBER = re.compile(r"^(?P<title>(?:\d{1,4}|[IVXLCDM]+))\.?$")
_ROMAN = re.compile(r"^M{0,4}(CM|CD|D?C{0,3})(XC|XL|L?X{0,3})(IX|IV|V?I{0,3})$")
# A setext underline: only "=" or only "-", no spaces inside ("- - -" is a rule, never an underline).
_SETEXT_UNDERLINE = re.compile(r"^(?:={2,}|-{2,})$")
_SCENE_BREAK = re.compile(r"^(?:(?:\*\s*){3,}|#|(?:#\s*){3}|~{3,}|(?:-\s*){3,}|(?:_\s*){3,}|§)$")

_CONTAINER_KEYS = {"part", "book", "volume", "act"}
"""Headings above chapters: an empty "Part Two" followed by "Chapter 5" becomes one part, "Part Two / Chapter 5"."""


@dataclass(frozen=True)
class _Line:
    start: int
    """Offset of the line's first non-blank character."""
    end: int
    """Offset just past the line's newline."""
    text: str
    """The line, stripped."""


@dataclass(frozen=True)
class _Heading:
    line: _Line
    title: str
    rank: int
    """1 for parts and books (and Markdown ``#``), 2 for chapters (``##``), and so on: used to merge empty parents."""


def _lines(document: str) -> list[_Line]:
    lines: list[_Line] = []
    offset = 0
    for raw in document.splitlines(keepends=True):
        stripped = raw.strip()
        lead = len(raw) - len(raw.lstrip())
        lines.append(_Line(offset + min(lead, len(raw)), offset + len(raw), stripped))
        offset += len(raw)
    return lines


def _standalone(lines: list[_Line], index: int) -> bool:
    """Blank (or nothing) before and after: the line is a paragraph of its own."""
    before = index == 0 or not lines[index - 1].text
    after = index == len(lines) - 1 or not lines[index + 1].text
    return before and after


def _heading(lines: list[_Line], index: int) -> _Heading | None:
    line = lines[index]
    text = line.text
    if not text or len(text) > HEADING_MAX_CHARS:
        return None
    setext = _setext_heading(lines, index)
    if setext is not None:
        return setext
    markdown = _MARKDOWN.match(text)
    if markdown and not _SCENE_BREAK.match(text):
        return _Heading(line, markdown.group("title").strip(), len(markdown.group(1)))
    numbered = _NUMBERED_KEYWORD.match(text)
    if numbered and _numbered_heading(numbered):
        rank = 1 if numbered.group("key").lower() in _CONTAINER_KEYS else 2
        return _Heading(line, _clean_title(text), rank)
    titled = _TITLE_KEYWORD.match(text)
    if titled and _standalone(lines, index) and len(text.split()) <= 10 and not text.endswith((",", ";", "?", "!")):
        return _Heading(line, _clean_title(titled.group("title")), 2)
    bare = _BARE_NUMBER.match(text)
    if bare and (bare.group("title").isdigit() or _ROMAN.match(bare.group("title"))):
        return _Heading(line, bare.group("title"), 2)
    return None


def _setext_heading(lines: list[_Line], index: int) -> _Heading | None:
    """A Markdown setext heading: a one-line paragraph underlined with ``===`` (rank 1) or ``---`` (rank 2).

    The heading spans both lines, so the body starts after the underline. A ``---`` after a blank line is a scene
    break (as ever); so is a ``---`` under a line that reads as prose: the last line of a longer paragraph, or a
    line ending in ``.``, ``,``, ``;`` or ``:`` (writers put a rule right under a scene's last sentence).
    """
    line = lines[index]
    if index + 1 >= len(lines) or (index > 0 and lines[index - 1].text):
        return None
    underline = lines[index + 1].text
    if not _SETEXT_UNDERLINE.match(underline):
        return None
    text = line.text
    if _SCENE_BREAK.match(text) or _MARKDOWN.match(text) or text.startswith("```"):
        return None
    if underline.startswith("-") and text.endswith((".", ",", ";", ":")) and not text.endswith(".."):
        return None
    both = _Line(line.start, lines[index + 1].end, text)
    return _Heading(both, _clean_title(text), 1 if underline.startswith("=") else 2)


def _numbered_heading(match: re.Match[str]) -> bool:
    """ "Chapter 3 The Road" is a heading; "Part two of the plan was simple." is a sentence."""
    number, rest = match.group("number"), match.group("rest")
    roman_letters = re.fullmatch(r"[ivxlcdm]+", number, re.IGNORECASE) is not None
    if roman_letters and not _ROMAN.match(number.upper()) and not re.fullmatch(_NUMBER_WORDS, number, re.IGNORECASE):
        return False  # "Chapter mild" is no numeral
    if not _TITLE_AFTER_NUMBER.match(rest):
        return False
    plain = rest.strip()
    if plain.endswith((",", ";")) or (plain.endswith((".", "!", "?")) and rest[:1].isspace()):
        return False
    return len(match.group(0).split()) <= 14


def _clean_title(title: str) -> str:
    """ "Chapter about Lisbon." -> "Chapter about Lisbon": a heading's closing period is not part of its name."""
    title = " ".join(title.split())
    return title[:-1] if title.endswith(".") and not title.endswith("..") else title


# --- splitting ---------------------------------------------------------------------------------------------------


def split_document(document: str, chunk_words: int = DEFAULT_CHUNK_WORDS) -> list[Part]:
    """The document's parts in order: by headings, else by scene breaks, else even chunks of about ``chunk_words``.

    Nothing is lost: the parts' spans cover every character with words in it (blank space before the first part may
    be left out). An empty document gives no parts; a document of only headings gives one empty part per heading.
    """
    if chunk_words < 1:
        raise ValueError("chunk_words must be positive")
    if not document.strip():
        return []
    lines = _lines(document)
    prose = _outside_code_fences(lines)
    headings = [heading for index in prose if (heading := _heading(lines, index)) is not None]
    if headings:
        return _by_headings(document, headings)
    breaks = [lines[index] for index in prose if lines[index].text and _SCENE_BREAK.match(lines[index].text)]
    if breaks:
        scenes = _by_scene_breaks(document, breaks)
        if len(scenes) > 1:
            return scenes
    return _even_chunks(document, 0, len(document), chunk_words)


def _outside_code_fences(lines: list[_Line]) -> list[int]:
    """Indexes of the lines outside ``` fences: a ``# comment`` in a code sample is no chapter."""
    kept: list[int] = []
    fenced = False
    for index, line in enumerate(lines):
        if line.text.startswith("```"):
            fenced = not fenced
        elif not fenced:
            kept.append(index)
    return kept


def _by_headings(document: str, headings: list[_Heading]) -> list[Part]:
    parts: list[Part] = []
    first = headings[0].line.start
    opening = document[:first]
    if re.search(r"\w", opening):
        start = len(opening) - len(opening.lstrip())
        parts.append(Part("Opening", start, start, first, "opening", document[start:first]))
    pending: list[_Heading] = []  # empty container headings ("Part Two") waiting for their first chapter
    for index, heading in enumerate(headings):
        end = headings[index + 1].line.start if index + 1 < len(headings) else len(document)
        body_start = min(heading.line.end, end)
        empty = not re.search(r"\w", document[body_start:end])
        following = headings[index + 1] if index + 1 < len(headings) else None
        if empty and following is not None and heading.rank < following.rank:
            pending.append(heading)
            continue
        top = pending[0].line.start if pending else heading.line.start
        title = " / ".join([*(parent.title for parent in pending), heading.title])
        pending = []
        parts.append(Part(title, top, body_start, end, "heading", document[top:end]))
    return parts


def _by_scene_breaks(document: str, breaks: list[_Line]) -> list[Part]:
    """Scenes between breaks; the break line itself belongs to the scene it opens (jumping there shows the break)."""
    bounds: list[tuple[int, int]] = []  # (start, body_start)
    lead = len(document) - len(document.lstrip())
    if re.search(r"\w", document[: breaks[0].start]):
        bounds.append((lead, lead))
    for line in breaks:
        bounds.append((line.start, min(line.end, len(document))))
    parts: list[Part] = []
    for index, (start, body_start) in enumerate(bounds):
        end = bounds[index + 1][0] if index + 1 < len(bounds) else len(document)
        if not re.search(r"\w", document[body_start:end]):
            continue  # a break with nothing after it (or two in a row) is not a scene
        parts.append(Part(f"Scene {len(parts) + 1}", start, body_start, end, "scene", document[start:end]))
    return parts


_PARAGRAPH_END = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+")
_WORD_END = re.compile(r"(?<=\S)\s+")


def _even_chunks(document: str, start: int, end: int, chunk_words: int) -> list[Part]:
    """About equal chunks cut between paragraphs; inside a paragraph far longer than a chunk, between sentences."""
    lead = len(document[start:end]) - len(document[start:end].lstrip())
    start += lead
    total = len(re.findall(r"\S+", document[start:end]))
    count = max(1, math.ceil(total / chunk_words))
    if count == 1:
        return [Part("Part 1", start, start, end, "chunk", document[start:end])]
    cuts = _cut_points(document, start, end, count)
    parts: list[Part] = []
    bounds = [start, *cuts, end]
    for index in range(len(bounds) - 1):
        a, b = bounds[index], bounds[index + 1]
        if re.search(r"\w", document[a:b]):
            parts.append(Part(f"Part {len(parts) + 1}", a, a, b, "chunk", document[a:b]))
    return parts


def _cut_points(document: str, start: int, end: int, count: int) -> list[int]:
    """Offsets where chunks 2..count start: the boundary nearest each k/count of the words, paragraph ends first."""
    total = len(re.findall(r"\S+", document[start:end]))
    target = total / count
    boundaries: list[tuple[int, int]] = []  # (offset where a piece starts, words before it)
    seen = 0
    for para_start, para_end in _spans(document, start, end, _PARAGRAPH_END):
        words = len(re.findall(r"\S+", document[para_start:para_end]))
        if words > 2 * target:  # a huge paragraph: cut it between sentences (between words if it has none)
            pattern = _SENTENCE_END if _SENTENCE_END.search(document, para_start, para_end) else _WORD_END
            pieces = _spans(document, para_start, para_end, pattern)
        else:
            pieces = [(para_start, para_end)]
        for piece_start, piece_end in pieces:
            if seen:
                boundaries.append((piece_start, seen))
            seen += len(re.findall(r"\S+", document[piece_start:piece_end]))
    cuts: list[int] = []
    index = 0
    for k in range(1, count):
        goal = k * target
        while index + 1 < len(boundaries) and abs(boundaries[index + 1][1] - goal) <= abs(boundaries[index][1] - goal):
            index += 1
        if index < len(boundaries) and (not cuts or boundaries[index][0] > cuts[-1]):
            cuts.append(boundaries[index][0])
    return cuts


def _spans(document: str, start: int, end: int, separator: re.Pattern[str]) -> list[tuple[int, int]]:
    """Consecutive spans of ``document[start:end]``, each ending after its separator."""
    spans: list[tuple[int, int]] = []
    last = start
    for match in separator.finditer(document, start, end):
        if match.end() > last:
            spans.append((last, match.end()))
            last = match.end()
    if last < end:
        spans.append((last, end))
    return spans
