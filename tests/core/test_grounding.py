"""The invention check: names and numbers a summary adds to its source, and the faithful fallback."""

from __future__ import annotations

import pytest

from assistant.core.grounding import (
    central_sentences,
    invented_terms,
    names_nothing,
    proper_nouns,
    sentences,
    tidy_summary,
)

SOURCE = (
    "Chapter 3: Lisbon\n\n"
    "Ana Silva walked down to the harbour in Lisbon. She met Mr. Costa, who sold three boats for 1,200 escudos. "
    "The rain had not stopped since Tuesday, and the Silvas' old house leaked."
)

INVENTIONS = {
    "faithful, names mid-sentence": ("Ana Silva walks to the harbour in Lisbon and meets Costa.", []),
    "an invented film and character": ("In Toy Story, Ana meets Woody in Lisbon.", ["Toy", "Story", "Woody"]),
    "sentence-initial common words are not names": ("Meanwhile the harbour is busy. Rain falls on Lisbon.", []),
    "a sentence-initial name seen mid-sentence too": ("Paris is far. Ana never went to Paris.", ["Paris"]),
    "a name met only at sentence starts is let through": ("Zorblax went home.", []),
    "numbers match by value, digits or words": ("Ana buys 3 boats for twelve hundred escudos.", []),
    "a wrong count and an invented year": ("Costa sells four boats in 1887.", ["four", "1887"]),
    "possessives and plurals of known names": ("Silva's boats and the Silvas' house leak.", []),
    "honorifics are not names": ("Mr. Costa sells boats to Ms. Silva on Tuesday.", []),
    "an invented day": ("Costa sells boats on Friday.", ["Friday"]),
    "chapter numbers are numbers": ("In Chapter 7, Ana leaves Lisbon.", ["7"]),
    "the chapter's own number is known": ("In Chapter 3, Ana leaves Lisbon.", []),
    "'one' is a pronoun more often than a count": ("No one in Lisbon saw her, and one day she left.", []),
    "a hyphenated invented name": ("Ana, a Lisbon-born Jewish writer, leaves.", ["Jewish"]),
    "an invented nationality at a sentence start only": ("Jewish narratives shape Silva's life.", []),
    "pronoun I is not a name": ("I think Ana is tired, said Costa.", []),
}


@pytest.mark.parametrize("name", sorted(INVENTIONS))
def test_invented_terms(name: str) -> None:
    summary, invented = INVENTIONS[name]
    assert invented_terms(summary, SOURCE) == invented


@pytest.mark.parametrize(
    ("summary", "nouns"),
    [
        ("The Old Man sat by Lake Tahoe.", ["Old", "Man", "Lake", "Tahoe"]),
        ("Ana went home. Ana slept.", []),
        ("Ana went home. Then Ana slept.", ["Ana"]),
        ("Ana went home. Later Bo saw Ana.", ["Bo", "Ana"]),
        ('"Stop," said Bo. "Why?" asked Ana.', ["Bo", "Ana"]),
        ("- Ana leaves.\n- Bo stays.", []),
        ("J. R. Tolkien wrote it.", ["R", "Tolkien"]),
    ],
)
def test_proper_nouns(summary: str, nouns: list[str]) -> None:
    assert proper_nouns(summary) == nouns


def test_names_nothing_asks_for_the_recurring_names_only() -> None:
    source = "Ana ran. Then Ana sat with Bo. Later Ana left, and Ana slept. The lamp was from Paris."
    assert names_nothing("This helps readers connect with the content.", source)
    assert not names_nothing("Ana runs, sits and sleeps.", source)
    assert not names_nothing("Someone sits.", "Plain words without any name at all. Nothing recurs.")


def test_central_sentences_are_quoted_from_the_text_in_order() -> None:
    text = (
        "The harbour was quiet. Ana Silva came to the harbour to find the boat. A gull cried. "
        "The boat had belonged to her brother, who left the harbour years ago. Ana found the boat at last. "
        "It was raining."
    )
    picked = central_sentences(text, max_words=30, max_sentences=2)
    chosen = sentences(picked)
    assert 1 <= len(chosen) <= 2
    originals = sentences(text)
    assert all(sentence in originals for sentence in chosen), "every sentence is the text's own"
    assert [originals.index(sentence) for sentence in chosen] == sorted(originals.index(s) for s in chosen)
    assert "A gull cried." not in chosen and "It was raining." not in chosen
    assert invented_terms(picked, text) == []


def test_central_sentences_keep_the_lead_and_skip_near_repeats() -> None:
    text = "Ana arrived in Lisbon. The smell of bread drifted. The smell of bread floated. Bread again, smell again."
    picked = central_sentences(text, max_words=40, max_sentences=3, lead=1)
    assert picked.startswith("Ana arrived in Lisbon.")
    assert not ("drifted" in picked and "floated" in picked)


@pytest.mark.parametrize("text", ["", "   ", "...", "\n\n"])
def test_central_sentences_of_nothing(text: str) -> None:
    assert central_sentences(text) == ""


def test_one_huge_sentence_is_cut_at_a_word() -> None:
    picked = central_sentences("word " * 500 + ".", max_words=60)
    assert len(picked.split()) <= 61 and picked.endswith("…")


@pytest.mark.parametrize(
    ("draft", "tidy"),
    [
        ("Ana meets Bo. This summary is short and clear.", "Ana meets Bo."),
        ("Ana meets Bo. Ana meets Bo. They leave.", "Ana meets Bo. They leave."),
        ("**Ana** meets Bo. They walk to the", "Ana meets Bo."),
        ("1. Ana leaves.\n2. Bo stays.", "Ana leaves. Bo stays."),
        ("I've kept it short for you.", ""),
        ("Ana leaves", "Ana leaves"),
    ],
)
def test_tidy_summary(draft: str, tidy: str) -> None:
    assert tidy_summary(draft) == tidy
