"""Reading a user's file: every encoding a writer has, and a clear refusal of what is not text."""

from __future__ import annotations

import codecs
import os
from pathlib import Path

import pytest

from assistant.core.documents import decode_bytes, read_text_file, write_text_atomic
from assistant.core.errors import InputError

TEXT = "Chapter 1 — Café, naïve, 東京, 😀\nThe end.\n"


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (TEXT.encode("utf-8"), "utf-8"),
        (codecs.BOM_UTF8 + TEXT.encode("utf-8"), "utf-8-sig"),
        (TEXT.encode("utf-16"), "utf-16"),
        (codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"), "utf-16"),
    ],
)
def test_unicode_files_read_back_exactly(tmp_path: Path, data: bytes, encoding: str) -> None:
    path = tmp_path / "chapter.txt"
    path.write_bytes(data)
    decoded = read_text_file(path)
    assert decoded.text == TEXT
    assert decoded.encoding == encoding
    assert not decoded.is_legacy


def test_legacy_windows_text_is_read_and_flagged_for_confirmation(tmp_path: Path) -> None:
    path = tmp_path / "old.txt"
    path.write_bytes("Déjà vu – “quoted” café\n".encode("cp1252"))
    decoded = read_text_file(path)
    assert decoded.text == "Déjà vu – “quoted” café\n"
    assert decoded.is_legacy


def test_binary_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + os.urandom(256))
    with pytest.raises(InputError, match="binary file"):
        read_text_file(path)


def test_bytes_that_are_no_common_encoding_are_refused() -> None:
    garbage = bytes([0x81, 0x8D, 0x8F, 0x90, 0x9D, 0x41]) * 50
    with pytest.raises(InputError, match="not text in any common encoding"):
        decode_bytes(garbage)


def test_oversized_file_is_refused_with_its_size(tmp_path: Path) -> None:
    path = tmp_path / "huge.txt"
    path.write_bytes(b"a" * 3000)
    with pytest.raises(InputError, match=r"is 3 KB; files over 2 KB are not opened"):
        read_text_file(path, max_bytes=2048)


def test_missing_file_and_folder_are_explained(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_text_file(tmp_path / "nope.txt")
    with pytest.raises(InputError, match="is a folder"):
        read_text_file(tmp_path)


def test_atomic_write_replaces_whole_file_and_keeps_permissions(tmp_path: Path) -> None:
    path = tmp_path / "novel.md"
    path.write_text("old draft", encoding="utf-8")
    path.chmod(0o640)
    write_text_atomic(path, TEXT)
    assert path.read_text(encoding="utf-8") == TEXT
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["novel.md"], "no temporary file is left behind"


def test_failed_atomic_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "novel.txt"
    path.write_text("precious words", encoding="utf-8")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(path, "emoji 😀 cannot be latin-1", encoding="latin-1")
    assert path.read_text(encoding="utf-8") == "precious words"
    assert [p.name for p in tmp_path.iterdir()] == ["novel.txt"]
