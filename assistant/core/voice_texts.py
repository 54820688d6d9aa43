"""The writer's own texts, made ready to learn a voice from: found, read, cleaned, split, counted. No Qt, no torch.

A voice is learnt from .txt and .md files (the app's own documents are such files). Each is read as UTF-8, refused
with a sentence naming it when it is binary, not UTF-8, or too large; Markdown marks and front matter are taken out,
so the model learns the prose and not the markup. The text is split into paragraphs; about one paragraph in ten
(the last of every ten) is held out to measure the voice on text it never trained on. Training windows are cut on
paragraph boundaries from the rest (:func:`windows`).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from assistant.core.documents import decode_bytes
from assistant.core.errors import InputError

TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".text")
MIN_WORDS = 2000
"""Fewer words than this teach a 135M-parameter model nothing it keeps: the adapter would learn the few pages by
heart (the held-out perplexity rises after a few dozen steps) instead of the voice."""
MAX_FILE_BYTES = 20 * 1024 * 1024
"""The largest file read (a novel is about 1 MB of text); a 200 MB file is refused at once, from its size."""
MAX_TOTAL_WORDS = 2_000_000
"""More text than a CPU could learn from in a day; refused rather than silently cut."""
HELD_OUT_EVERY = 10
"""The last paragraph of every ten is held out for evaluation (about 10% of the text, spread over all of it)."""

_FRONT_MATTER = re.compile(r"\A(?:---|\+\+\+)[ \t]*\n.*?\n(?:---|\+\+\+|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_FENCE = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1[^\n]*$", re.DOTALL | re.MULTILINE)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}(?:[ \t].*)?$", re.MULTILINE)
_SETEXT = re.compile(r"^(.{1,80})\n(?:=+|-+)[ \t]*$", re.MULTILINE)
_RULE = re.compile(r"^[ \t]*(?:[-*_][ \t]*){3,}$|^[ \t]*(?:#[ \t]*){1,3}$", re.MULTILINE)
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)|\[([^\]]+)\]\[[^\]]*\]")
_LINK_DEFINITION = re.compile(r"^[ \t]{0,3}\[[^\]]+\]:[ \t]+\S+.*$", re.MULTILINE)
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_EMPHASIS = re.compile(r"(\*\*|__|\*|_|~~)(?=\S)(.+?)(?<=\S)\1")
_CODE_SPAN = re.compile(r"`+([^`]+)`+")
_QUOTE = re.compile(r"^[ \t]{0,3}>[ \t]?", re.MULTILINE)
_LIST_MARK = re.compile(r"^[ \t]*(?:[-*+]|\d{1,3}[.)])[ \t]+", re.MULTILINE)
_BLANK_LINES = re.compile(r"\n[ \t]*\n+")
_WORD = re.compile(r"\w+(?:['’]\w+)*")


@dataclass(frozen=True)
class TextFile:
    """One file a voice learnt from: where it was, how many words it gave, and its sha256 (in the voice's report)."""

    path: Path
    words: int
    sha256: str


@dataclass
class VoiceTexts:
    """The cleaned paragraphs of every file, split into the ones trained on and the ones held out."""

    files: list[TextFile] = field(default_factory=list)
    train: list[str] = field(default_factory=list)
    held_out: list[str] = field(default_factory=list)

    @property
    def words(self) -> int:
        return sum(file.words for file in self.files)

    @property
    def held_out_words(self) -> int:
        return sum(count_words(paragraph) for paragraph in self.held_out)


def count_words(text: str) -> int:
    return len(_WORD.findall(text))


def find_text_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The .txt and .md files named, and those inside the folders named (recursively, sorted, hidden ones skipped)."""
    found: list[Path] = []
    for given in paths:
        path = Path(given).expanduser()
        if path.is_dir():
            inside = sorted(
                candidate
                for candidate in path.rglob("*")
                if candidate.is_file()
                and candidate.suffix.lower() in TEXT_SUFFIXES
                and not any(part.startswith(".") for part in candidate.relative_to(path).parts)
            )
            if not inside:
                raise InputError(f"The folder '{path}' holds no .txt or .md files to learn a voice from.")
            found.extend(inside)
        elif path.is_file():
            found.append(path)
        elif path.exists():
            raise InputError(f"'{path}' is neither a file nor a folder.")
        else:
            raise InputError(f"'{path}' does not exist.")
    unique = list(dict.fromkeys(path.resolve() for path in found))
    if not unique:
        raise InputError("No texts were given: name .txt or .md files, or folders that hold them.")
    return unique


def read_voice_file(path: Path, max_bytes: int = MAX_FILE_BYTES) -> tuple[str, str]:
    """A file's text (UTF-8) and the sha256 of its bytes, or InputError with a sentence naming the file."""
    name = f"'{path}'"
    try:
        size = path.stat().st_size
    except OSError as error:
        raise InputError(f"{name} cannot be read: {error.strerror}.") from None
    if size > max_bytes:
        raise InputError(
            f"{name} is {size / 2**20:,.0f} MB; a voice learns from texts up to {max_bytes / 2**20:.0f} MB a file "
            "(a novel is about 1 MB). Choose the chapters you wrote, not an archive or an export."
        )
    if path.suffix.lower() not in TEXT_SUFFIXES:
        raise InputError(f"{name} is not a .txt or .md file; a voice learns from plain text and Markdown.")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"{name} cannot be read: {error.strerror}.") from None
    decoded = decode_bytes(data, name)  # binary files are refused here, naming the file
    if decoded.encoding not in ("utf-8", "utf-8-sig"):
        raise InputError(
            f"{name} is not UTF-8 text (it reads as {decoded.encoding}); open it in Penwright and save it as UTF-8."
        )
    return decoded.text, hashlib.sha256(data).hexdigest()


def clean_text(text: str, markdown: bool = True) -> str:
    """Text without Markdown's marks and front matter, paragraphs separated by one blank line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufeff", "")
    if markdown:
        text = _FRONT_MATTER.sub("", text, count=1)
        text = _FENCE.sub("\n", text)
        text = _HTML_COMMENT.sub("", text)
        text = _LINK_DEFINITION.sub("", text)
        text = _SETEXT.sub(lambda match: "" if _RULE.fullmatch(match.group(1)) is None else match.group(0), text)
        text = _HEADING.sub("", text)
        text = _RULE.sub("", text)
        text = _IMAGE.sub("", text)
        text = _LINK.sub(lambda match: match.group(1) or match.group(2) or "", text)
        text = _HTML_TAG.sub("", text)
        text = _CODE_SPAN.sub(r"\1", text)
        for _ in range(2):  # **_nested_** marks
            text = _EMPHASIS.sub(r"\2", text)
        text = _QUOTE.sub("", text)
        text = _LIST_MARK.sub("", text)
        text = text.replace("\\", "")
    return "\n\n".join(paragraphs(text))


def paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, hard-wrapped prose joined into one line; verse (short lines that each start
    with a capital, as poems' lines do and wrapped prose's mostly do not) keeps its lines."""
    result = []
    for block in _BLANK_LINES.split(text.strip()):
        lines = [line.strip() for line in block.split("\n") if line.strip()]
        if not lines:
            continue
        verse = (
            len(lines) > 1
            and sum(len(line) for line in lines) / len(lines) < 60
            and all(line[0].isupper() or line[0] in "\"'“‘" for line in lines[1:])
        )
        result.append("\n".join(lines) if verse else " ".join(lines))
    return result


def load_texts(
    paths: Iterable[str | os.PathLike[str]],
    min_words: int = MIN_WORDS,
    max_file_bytes: int = MAX_FILE_BYTES,
    documents: Sequence[tuple[str, str]] = (),
) -> VoiceTexts:
    """Read, clean and split the writer's texts; InputError (a sentence) when they cannot teach a voice.

    ``documents`` are texts already in memory as (name, text), such as the app's open documents with their unsaved
    edits; a name ending in .md is read as Markdown."""
    texts = VoiceTexts()
    every: list[str] = []
    sources: list[tuple[Path, str, str]] = [
        (Path(name), text, hashlib.sha256(text.encode("utf-8")).hexdigest()) for name, text in documents
    ]
    named = list(paths)
    files = find_text_files(named) if named or not documents else []
    for path, raw, digest in [*sources, *((path, *read_voice_file(path, max_file_bytes)) for path in files)]:
        cleaned = paragraphs(clean_text(raw, markdown=path.suffix.lower() in (".md", ".markdown")))
        words = sum(count_words(paragraph) for paragraph in cleaned)
        texts.files.append(TextFile(path=path, words=words, sha256=digest))
        every.extend(cleaned)
        if texts.words > MAX_TOTAL_WORDS:
            raise InputError(
                f"These texts hold more than {MAX_TOTAL_WORDS:,} words; choose up to a few novels' worth "
                "(20,000-200,000 words learn a voice well)."
            )
    total = texts.words
    if total < min_words:
        where = "These texts hold" if len(texts.files) > 1 else f"'{texts.files[0].path.name}' holds"
        raise InputError(
            f"{where} {total:,} words; a voice needs at least {min_words:,} words of your writing "
            "(20,000 or more learn it well)."
        )
    for index, paragraph in enumerate(every):
        (texts.held_out if index % HELD_OUT_EVERY == HELD_OUT_EVERY - 1 else texts.train).append(paragraph)
    if not texts.held_out:  # a few very long paragraphs: hold out the last one
        texts.held_out.append(texts.train.pop())
    return texts


def windows(
    paragraphs_: Sequence[str],
    encode: Callable[[str], list[int]],
    length: int,
    separator: str = "\n\n",
) -> list[list[int]]:
    """Token windows of at most ``length`` tokens, each made of whole consecutive paragraphs.

    A paragraph longer than a window is cut into window-sized pieces of its own (the only cut inside a paragraph).
    """
    separator_ids = encode(separator) if separator else []
    result: list[list[int]] = []
    current: list[int] = []
    for paragraph in paragraphs_:
        ids = encode(paragraph)
        if not ids:
            continue
        if len(ids) > length:
            if current:
                result.append(current)
                current = []
            result.extend(ids[start : start + length] for start in range(0, len(ids), length))
            continue
        joined = [*current, *separator_ids, *ids] if current else ids
        if len(joined) > length:
            result.append(current)
            current = ids
        else:
            current = joined
    if current:
        result.append(current)
    return [window for window in result if len(window) > 1]
