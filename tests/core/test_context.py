"""Fitting text into a token budget: the newest words stay, chunks cover the whole text."""

from __future__ import annotations

from assistant.core.context import keep_newest, split_into_chunks


def words(text: str) -> int:
    return len(text.split())


def test_keep_newest_keeps_the_end_at_a_word_boundary() -> None:
    text = " ".join(f"w{index}" for index in range(1000))
    kept = keep_newest(text, lambda candidate: words(candidate) <= 10)
    assert kept == " ".join(f"w{index}" for index in range(990, 1000))


def test_keep_newest_returns_everything_that_fits() -> None:
    assert keep_newest("short text", lambda _candidate: True) == "short text"


def test_chunks_cover_the_text_exactly_and_respect_the_limit() -> None:
    paragraphs = [" ".join(f"p{p}s{s}." for s in range(30)) for p in range(20)]
    text = "\n\n".join(paragraphs)
    chunks = split_into_chunks(text, 50, words)
    assert "".join(chunks) == text
    assert all(words(chunk) <= 50 for chunk in chunks)
    assert len(chunks) >= 12


def test_chunks_prefer_paragraph_breaks() -> None:
    text = "\n\n".join(" ".join(["word"] * 10) for _ in range(6))
    chunks = split_into_chunks(text, 25, words)
    assert all(chunk.rstrip(" ").endswith("\n\n") or chunk is chunks[-1] for chunk in chunks)


def test_a_single_giant_word_is_still_split() -> None:
    def chars(text: str) -> int:
        return len(text)

    chunks = split_into_chunks("x" * 1000, 100, chars)
    assert "".join(chunks) == "x" * 1000
    assert all(len(chunk) <= 100 for chunk in chunks)
