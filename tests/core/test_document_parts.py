"""Splitting a manuscript on its own headings: titles as written, offsets at the headings, nothing lost."""

from __future__ import annotations

import re

import pytest

from assistant.core.document_parts import split_document

SPLITS = {
    "markdown headings": (
        "## Lisbon\n\nAna walked to the harbour.\n\n## Oslo\n\nIngrid took the ferry.\n",
        ["Lisbon", "Oslo"],
        "heading",
    ),
    "Chapter N with titles": (
        "Chapter 1: The Road\n\nAna left at dawn.\n\nChapter 2 - The River\n\nShe crossed at noon.\n",
        ["Chapter 1: The Road", "Chapter 2 - The River"],
        "heading",
    ),
    "capital roman numerals": (
        "CHAPTER IV\n\nThe storm broke.\n\nCHAPTER V\n\nThe sea was calm.\n",
        ["CHAPTER IV", "CHAPTER V"],
        "heading",
    ),
    "written numbers and Part": (
        "Part Two\n\nChapter Twenty-One\n\nHe waited.\n\nChapter Twenty-Two: Home\n\nHe went home.\n",
        ["Part Two / Chapter Twenty-One", "Chapter Twenty-Two: Home"],
        "heading",
    ),
    "bare numbers on their own line": (
        "1.\n\nThe first day.\n\n2.\n\nThe second day.\n\n3\n\nThe third day.\n",
        ["1", "2", "3"],
        "heading",
    ),
    "bare roman numerals": (
        "I.\n\nSpring came.\n\nII.\n\nSummer came.\n\nIII.\n\nAutumn came.\n",
        ["I", "II", "III"],
        "heading",
    ),
    "prologue and epilogue": (
        "Prologue\n\nLong ago.\n\nChapter 1\n\nNow.\n\nEpilogue: Ten Years Later\n\nAfter.\n",
        ["Prologue", "Chapter 1", "Epilogue: Ten Years Later"],
        "heading",
    ),
    "a short 'Chapter about' line standing alone": (
        "Chapter about Lisbon.\n\nAna lived in Lisbon.\n\nChapter about Oslo.\n\nIngrid lived in Oslo.\n",
        ["Chapter about Lisbon", "Chapter about Oslo"],
        "heading",
    ),
    "setext headings underlined with === and ---": (
        "Lisbon\n======\n\nAna walked to the harbour.\n\nOslo\n----\n\nIngrid took the ferry.\n",
        ["Lisbon", "Oslo"],
        "heading",
    ),
    "setext headings whose titles end in ? or !": (
        "Who Took It?\n============\n\nNobody knew.\n\nRun!\n---\n\nThey ran.\n",
        ["Who Took It?", "Run!"],
        "heading",
    ),
    "a setext Part above a setext chapter": (
        "Part Two\n========\n\nThe Harbour\n-----------\n\nAna waited.\n\nThe Ferry\n---------\n\nShe left.\n",
        ["Part Two / The Harbour", "The Ferry"],
        "heading",
    ),
    "--- after a blank line stays a scene break": (
        "Ana waited.\n\n---\n\nBo arrived.\n\n---\n\nCy left.\n",
        ["Scene 1", "Scene 2", "Scene 3"],
        "scene",
    ),
    "--- right under a sentence is a scene break, not a heading": (
        "Ana waited.\n---\nBo arrived at noon.\n---\nCy left.\n",
        ["Scene 1", "Scene 2", "Scene 3"],
        "scene",
    ),
    "--- under a paragraph of several lines is a scene break": (
        "Ana waited\nby the door\n---\n\nBo arrived.\n",
        ["Scene 1", "Scene 2"],
        "scene",
    ),
    "- - - with spaces is never an underline": (
        "Ana waited\n- - -\n\nBo arrived.\n",
        ["Scene 1", "Scene 2"],
        "scene",
    ),
    "scene breaks of every kind": (
        "Ana waited.\n\n***\n\nBo arrived.\n\n* * *\n\nCy left.\n\n#\n\nDee slept.\n",
        ["Scene 1", "Scene 2", "Scene 3", "Scene 4"],
        "scene",
    ),
}


@pytest.mark.parametrize("name", sorted(SPLITS))
def test_split_on_the_documents_own_structure(name: str) -> None:
    document, titles, kind = SPLITS[name]
    parts = split_document(document)
    assert [part.title for part in parts] == titles
    assert {part.kind for part in parts} == {kind}
    for part in parts:
        assert document[part.start : part.end] == part.text
        assert part.start <= part.body_start <= part.end
    assert parts[0].start == 0 and parts[-1].end == len(document)
    for before, after in zip(parts, parts[1:], strict=False):
        assert before.end == after.start, "the parts cover the document without gaps"


@pytest.mark.parametrize(
    ("document", "heading_lines"),
    [
        ("# Book\n\n## Chapter 1\n\nText one.\n\n## Chapter 2\n\nText two.\n", ["# Book", "## Chapter 2"]),
        ("Intro words here.\n\nChapter 1\n\nText.\n\nChapter 2\n\nMore.\n", ["Intro words", "Chapter 1", "Chapter 2"]),
        ("  Chapter 1\n\nIndented heading.\n\n  Chapter 2\n\nAgain.\n", ["Chapter 1", "Chapter 2"]),
        ("Lisbon\n======\n\nText.\n\nOslo\n---\n\nMore.\n", ["Lisbon\n===", "Oslo\n---"]),
        ("Intro.\n\nChapter 1\n---------\n\nText.\n", ["Intro.", "Chapter 1\n---"]),
    ],
)
def test_offsets_point_at_the_headings(document: str, heading_lines: list[str]) -> None:
    """The GUI jumps to ``start``: it must be the first character of the heading (or of the opening text)."""
    parts = split_document(document)
    assert all(document[part.start :].startswith(line) for part, line in zip(parts, heading_lines, strict=True))


def test_a_setext_heading_spans_its_underline() -> None:
    """The underline belongs to the heading: the body starts after it, and an underlined title alone is empty."""
    document = "Lisbon\n======\n\nAna walked.\n\nOslo\n----\n"
    lisbon, oslo = split_document(document)
    assert lisbon.body.strip() == "Ana walked."
    assert document[lisbon.start : lisbon.body_start] == "Lisbon\n======\n"
    assert oslo.is_empty and oslo.body == ""


def test_a_setext_underline_in_a_code_sample_is_no_heading() -> None:
    document = "# Notes\n\nProse.\n\n```\ntitle\n=====\n```\n\nMore prose.\n"
    assert [part.title for part in split_document(document)] == ["Notes"]


def test_text_before_the_first_heading_is_its_own_part() -> None:
    document = "A note on the text, in several words.\n\nChapter 1\n\nThe story.\n"
    parts = split_document(document)
    assert [(part.title, part.kind) for part in parts] == [("Opening", "opening"), ("Chapter 1", "heading")]


@pytest.mark.parametrize(
    "line",
    [
        "Part two of the plan was simple.",
        "Chapter and verse, she said, were not enough for him to go on with.",
        "Book it for Tuesday, please.",
        "Part mid-way through, he stopped.",
        "I went home.",
        "12 people came to the party.",
    ],
)
def test_sentences_that_start_like_headings_are_prose(line: str) -> None:
    document = f"Chapter 1\n\nThe beginning.\n\n{line}\n\nThe end.\n"
    assert [part.title for part in split_document(document)] == ["Chapter 1"]


def test_a_hash_comment_in_a_code_sample_is_no_chapter() -> None:
    document = "# Notes\n\nSome prose.\n\n```\n# not a heading\nprint(1)\n```\n\nMore prose.\n"
    assert [part.title for part in split_document(document)] == ["Notes"]


def test_no_headings_gives_even_chunks_cut_between_paragraphs() -> None:
    paragraphs = [f"Paragraph {index} " + "word " * 98 for index in range(30)]  # 3,000 words
    document = "\n\n".join(paragraphs)
    parts = split_document(document, chunk_words=1000)
    assert [part.title for part in parts] == ["Part 1", "Part 2", "Part 3"]
    assert {part.kind for part in parts} == {"chunk"}
    sizes = [len(part.text.split()) for part in parts]
    assert max(sizes) - min(sizes) <= 100, sizes
    for part in parts:
        assert part.text.startswith("Paragraph "), "cuts fall between paragraphs"
    assert "".join(part.text for part in parts) == document


# --- bad input ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("document", ["", "   \n\n\t  ", "\n"])
def test_an_empty_document_has_no_parts(document: str) -> None:
    assert split_document(document) == []


def test_a_document_of_only_headings_gives_empty_parts() -> None:
    document = "# One\n\n# Two\n\n# Three\n"
    parts = split_document(document)
    assert [part.title for part in parts] == ["One", "Two", "Three"]
    assert all(part.is_empty for part in parts)
    assert [part.start for part in parts] == [
        document.index("# One"),
        document.index("# Two"),
        document.index("# Three"),
    ]


def test_a_placeholder_chapter_is_kept_empty_between_written_ones() -> None:
    document = "Chapter 1\n\nWritten.\n\nChapter 2\n\nChapter 3\n\nWritten too.\n"
    parts = split_document(document)
    assert [(part.title, part.is_empty) for part in parts] == [
        ("Chapter 1", False),
        ("Chapter 2", True),
        ("Chapter 3", False),
    ]


def test_a_huge_single_paragraph_is_cut_between_sentences() -> None:
    document = "".join(f"Sentence number {index} is here. " for index in range(4000))  # 20,000 words, no break
    parts = split_document(document, chunk_words=1500)
    assert len(parts) == 14
    assert "".join(part.text for part in parts) == document
    for part in parts[1:]:
        assert re.match(r"Sentence number \d+ is here\.", part.text), "each chunk starts at a sentence"


def test_a_huge_paragraph_without_sentences_is_cut_between_words() -> None:
    document = "word " * 5000
    parts = split_document(document, chunk_words=1000)
    assert len(parts) == 5
    assert "".join(part.text for part in parts) == document
    assert all(part.text.startswith("word") for part in parts)
