"""Reading and writing the user's text files without ever losing a byte of them.

Reading decides the encoding (UTF-8 with or without BOM, UTF-16/32 with BOM, or a legacy 8-bit encoding) and
refuses binary files and files over a size limit with a sentence the user understands. Writing is atomic:
a temporary file in the same folder, fsync, then rename, so a crash mid-save leaves the old file intact.
"""

from __future__ import annotations

import codecs
import os
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from assistant.core.errors import InputError

MAX_TEXT_BYTES = 20 * 1024 * 1024
"""Larger files are refused: no writer's document is this big, and the editor would crawl."""

LEGACY_ENCODINGS = ("cp1252", "latin-1")
"""Tried, in order, when a file is not UTF-8; cp1252 rejects a few bytes, latin-1 never does."""

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclass(frozen=True)
class DecodedText:
    text: str
    encoding: str
    """The encoding the text was read with; saving writes it back the same way unless told otherwise."""

    @property
    def is_legacy(self) -> bool:
        """True when the file was not Unicode and the guess deserves the user's confirmation."""
        return self.encoding in LEGACY_ENCODINGS


def _human_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size} bytes"


def _looks_binary(text: str) -> bool:
    """Text with NULs or many control characters is a program, an image or an archive, not prose or code."""
    if "\x00" in text:
        return True
    sample = text[:65536]
    if not sample:
        return False
    controls = sum(1 for char in sample if unicodedata.category(char) == "Cc" and char not in "\t\n\r\f\v\x1b")
    return controls / len(sample) > 0.01


def decode_bytes(data: bytes, name: str = "The input") -> DecodedText:
    """Decode file contents, or raise InputError saying why this is not a text file."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(encoding)
            except UnicodeDecodeError as error:
                raise InputError(
                    f"{name} starts like {encoding.upper()} text but is damaged ({error.reason})."
                ) from None
            if _looks_binary(text):
                raise InputError(f"{name} is a binary file, not text.")
            return DecodedText(text, encoding)
    if b"\x00" in data[:65536]:
        raise InputError(f"{name} is a binary file, not text.")
    candidates = ("utf-8", *LEGACY_ENCODINGS)
    for encoding in candidates:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if _looks_binary(text):
            if encoding == "utf-8":
                raise InputError(f"{name} is a binary file, not text.")
            continue
        return DecodedText(text, encoding)
    raise InputError(f"{name} is not text in any common encoding (UTF-8, UTF-16, Windows-1252).")


def read_text_file(path: str | os.PathLike[str], max_bytes: int = MAX_TEXT_BYTES) -> DecodedText:
    """Read a user's file as text, refusing what the app cannot edit, with a reason."""
    file_path = Path(path)
    name = f"'{file_path}'"
    try:
        size = file_path.stat().st_size
    except FileNotFoundError:
        raise InputError(f"{name} does not exist.") from None
    except OSError as error:
        raise InputError(f"{name} cannot be read: {error.strerror}.") from None
    if file_path.is_dir():
        raise InputError(f"{name} is a folder, not a file.")
    if size > max_bytes:
        raise InputError(f"{name} is {_human_size(size)}; files over {_human_size(max_bytes)} are not opened.")
    try:
        data = file_path.read_bytes()
    except OSError as error:
        raise InputError(f"{name} cannot be read: {error.strerror}.") from None
    return decode_bytes(data, name)


def write_text_atomic(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``text`` so that a crash at any moment leaves either the old or the new file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode(encoding)
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as temp:
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())
        if target.exists():
            os.chmod(temp_name, target.stat().st_mode & 0o7777)
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


def _fsync_directory(folder: Path) -> None:
    """Make the rename itself durable (POSIX); Windows has no directory handles to sync."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
