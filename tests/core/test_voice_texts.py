"""Reading the writer's texts for a voice: cleaning, splitting, windows, and every bad input said in a sentence."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.core.errors import InputError
from assistant.core.voice_texts import (
    HELD_OUT_EVERY,
    clean_text,
    count_words,
    find_text_files,
    load_texts,
    windows,
)


def prose(paragraphs: int = 40, words_each: int = 60) -> str:
    return "\n\n".join(
        " ".join(f"word{index}x{number}" for number in range(words_each)) + "." for index in range(paragraphs)
    )


def test_markdown_marks_and_front_matter_are_taken_out() -> None:
    text = (
        "---\ntitle: Chapter One\ntags: [a, b]\n---\n# Chapter One\n\nShe said **no**, and *meant* it; see "
        "[the map](http://x.org) and `code`.\n\n> A quoted line\n> and its wrap.\n\n- a list item\n\n***\n\n"
        "```python\nprint('hi')\n```\n\nLast paragraph<!-- note -->.\n\nA Setext title\n===\n\nEnd."
    )
    cleaned = clean_text(text)
    assert cleaned.split("\n\n") == [
        "She said no, and meant it; see the map and code.",
        "A quoted line and its wrap.",
        "a list item",
        "Last paragraph.",
        "End.",
    ]


def test_hard_wrapped_prose_is_joined_and_verse_keeps_its_lines() -> None:
    text = "It was a long sentence that the writer\nwrapped by hand at seventy columns or so\nas they do.\n\n"
    text += "Roses are red,\nViolets are blue,\nSugar is sweet."
    assert clean_text(text, markdown=False).split("\n\n") == [
        "It was a long sentence that the writer wrapped by hand at seventy columns or so as they do.",
        "Roses are red,\nViolets are blue,\nSugar is sweet.",
    ]


def test_a_tenth_of_the_paragraphs_is_held_out(tmp_path: Path) -> None:
    (tmp_path / "one.txt").write_text(prose(40), encoding="utf-8")
    (tmp_path / "two.md").write_text("# Title\n\n" + prose(20), encoding="utf-8")
    (tmp_path / "skip.pdf").write_bytes(b"%PDF")
    texts = load_texts([tmp_path])
    assert [file.path.name for file in texts.files] == ["one.txt", "two.md"]
    assert texts.words == 60 * 60
    assert len(texts.held_out) == 60 // HELD_OUT_EVERY
    assert len(texts.train) + len(texts.held_out) == 60
    assert not set(texts.train) & set(texts.held_out)
    assert all(len(file.sha256) == 64 for file in texts.files)


def test_windows_are_whole_paragraphs_up_to_the_length() -> None:
    def encode(text: str) -> list[int]:
        return [len(word) for word in text.split()]

    paragraphs = ["a b c", "d e", "f g h i", "j " * 10]
    result = windows(paragraphs, encode, length=6, separator="")
    assert result == [[1, 1, 1, 1, 1], [1, 1, 1, 1], [1] * 6, [1] * 4]


def test_too_few_words_are_refused(tmp_path: Path) -> None:
    (tmp_path / "short.txt").write_text(prose(5, 50), encoding="utf-8")
    with pytest.raises(InputError, match=r"'short.txt' holds 250 words; a voice needs at least 2,000"):
        load_texts([tmp_path / "short.txt"])


def test_empty_folder_missing_path_and_folder_without_texts(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="holds no .txt or .md files"):
        find_text_files([tmp_path])
    (tmp_path / "picture.png").write_bytes(b"\x89PNG")
    with pytest.raises(InputError, match="holds no .txt or .md files"):
        find_text_files([tmp_path])
    with pytest.raises(InputError, match="does not exist"):
        find_text_files([tmp_path / "gone.txt"])
    with pytest.raises(InputError, match="No texts were given"):
        find_text_files([])


def test_binary_and_non_utf8_files_are_named(tmp_path: Path) -> None:
    binary = tmp_path / "chapter.txt"
    binary.write_bytes(b"\x00\x01\x02PK" * 1000)
    with pytest.raises(InputError, match=r"chapter.txt' is a binary file"):
        load_texts([binary])
    latin = tmp_path / "old.txt"
    latin.write_bytes(("caf\xe9 " * 3000).encode("cp1252"))
    with pytest.raises(InputError, match=r"old.txt' is not UTF-8 text"):
        load_texts([latin])
    empty = tmp_path / "empty.md"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(InputError, match="holds 0 words"):
        load_texts([empty])


def test_a_200_mb_file_is_refused_from_its_size_at_once(tmp_path: Path) -> None:
    huge = tmp_path / "export.txt"
    with huge.open("wb") as handle:  # sparse: 200 MB on paper, nothing on disk
        handle.truncate(200 * 2**20)
    with pytest.raises(InputError, match=r"export.txt' is 200 MB; a voice learns from texts up to 20 MB"):
        load_texts([huge])


def test_counting_words() -> None:
    assert count_words("It's a dog’s life — isn't it?") == 6


def test_open_documents_count_with_their_unsaved_text_beside_files(tmp_path: Path) -> None:
    """The app passes the open document as it is now (unsaved edits too), read as Markdown when its name says so."""
    paragraph = "The heron waited in the reeds while the tide turned, and nobody in the village looked up. "
    (tmp_path / "saved.txt").write_text("\n\n".join([paragraph * 3] * 40), encoding="utf-8")
    document = "# Chapter Two\n\n" + "\n\n".join(["**" + paragraph.strip() + "**"] * 12)
    texts = load_texts([tmp_path / "saved.txt"], documents=[("Chapter 2.md", document)])
    assert [file.path.name for file in texts.files] == ["Chapter 2.md", "saved.txt"]
    assert texts.files[0].words == 12 * count_words(paragraph) and len(texts.files[0].sha256) == 64
    assert not any("**" in text or "Chapter Two" in text for text in texts.train + texts.held_out)
    alone = load_texts([], documents=[("Chapter 2.md", "\n\n".join([document] * 20))])
    assert alone.words == 20 * texts.files[0].words
    with pytest.raises(InputError, match="'Draft' holds 3 words"):
        load_texts([], documents=[("Draft", "Just three words")])
