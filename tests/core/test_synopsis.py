"""The synopsis result and its cache: what the CLI prints, what the GUI reads, what survives a damaged file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from assistant.core.synopsis import EXTRACTIVE_NOTE, PartSummary, SummaryCache, Synopsis, cache_key


def synopsis(complete: bool = True) -> Synopsis:
    parts = [
        PartSummary(1, "Chapter 1: Lisbon", 0, 100, "Ana looks for letters.", "model"),
        PartSummary(2, "Chapter 2: Oslo", 100, 180, "Ingrid met Magnus.", "extractive", rejected=("Norway",)),
        PartSummary(3, "Chapter 3", 180, 200, "", "empty"),
    ]
    return Synopsis(parts, 3, "Two journeys.", "model", complete) if complete else Synopsis(parts[:2], 3)


def test_synopsis_text_lists_every_part_in_order_then_the_whole() -> None:
    text = synopsis().to_text("synopsis")
    positions = [text.index(title) for title in ("## Chapter 1: Lisbon", "## Chapter 2: Oslo", "## Chapter 3")]
    assert positions == sorted(positions)
    assert text.rstrip().endswith("## The whole\n\nTwo journeys.")
    assert f"Ingrid met Magnus. {EXTRACTIVE_NOTE}" in text, "quoted sentences say so"
    assert "(no text under this heading yet)" in text


def test_paragraph_form_is_the_whole_alone() -> None:
    assert synopsis().to_text("paragraph") == "Two journeys.\n"


@pytest.mark.parametrize("form", ["synopsis", "paragraph"])
def test_a_stopped_synopsis_keeps_the_parts_done(form: str) -> None:
    text = synopsis(complete=False).to_text(form)
    assert "Ana looks for letters." in text and "Ingrid met Magnus." in text
    assert "(stopped after 2 of 3 parts)" in text
    assert "The whole" not in text


def test_part_at_an_offset() -> None:
    result = synopsis()
    assert result.part_at(0) is result.parts[0]
    assert result.part_at(150) is result.parts[1]
    assert result.part_at(500) is None


def test_cache_key_depends_on_text_model_and_version() -> None:
    key = cache_key("part", "text", "model-a", (1, "prompt"))
    assert key == cache_key("part", "text", "model-a", (1, "prompt"))
    assert len({
        key,
        cache_key("part", "text!", "model-a", (1, "prompt")),
        cache_key("part", "text", "model-b", (1, "prompt")),
        cache_key("part", "text", "model-a", (2, "prompt")),
        cache_key("overall", "text", "model-a", (1, "prompt")),
    }) == 5  # fmt: skip


def test_cache_round_trip_under_the_data_folder(tmp_path: Path) -> None:
    cache = SummaryCache()
    assert cache.path.name == "summaries.sqlite3" and "data" in cache.path.parts
    assert cache.get("k") is None
    cache.put("k", "Ana leaves.", "regenerated")
    assert SummaryCache().get("k") == ("Ana leaves.", "regenerated"), "another instance (another run) reads it"
    assert (cache.hits, cache.misses) == (0, 1)


def test_cache_keeps_the_most_recently_used(tmp_path: Path) -> None:
    cache = SummaryCache(tmp_path / "c.sqlite3", max_entries=3)
    for index in range(5):
        cache.put(f"k{index}", f"s{index}", "model")
    assert [cache.get(f"k{index}") is not None for index in range(5)] == [False, False, True, True, True]


def test_a_damaged_cache_file_is_a_miss_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "summaries.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    cache = SummaryCache(path)
    assert cache.get("k") is None
    cache.put("k", "s", "model")  # logged and ignored
    assert cache.get("k") is None


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_data_folder_is_a_miss_not_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        cache = SummaryCache(folder / "sub" / "summaries.sqlite3")
        cache.put("k", "s", "model")
        assert cache.get("k") is None
    finally:
        folder.chmod(0o700)
