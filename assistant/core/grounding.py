"""Is a summary anchored in its source? Names and numbers the source never mentions, and a summary that cannot lie.

A 135M model asked to summarize a chapter about Lisbon may write about "Toy Story". Most of what a summary says
cannot be checked without a second model, but the most damaging inventions can: proper nouns and numbers. A name or
a number in a part's summary that the part never mentions is invented, whatever the rest of the sentence says.

:func:`invented_terms` finds them; :func:`central_sentences` is the fallback that is faithful by construction (the
part's own most central sentences). Pure Python, so the rules are tested without a model.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections import Counter

# Words that are capitalised mid-sentence without being names ("I"), and common words a summary starts sentences
# with. Only used to discount capitals, so the list errs towards leaving a real name in (it is still checked if it
# occurs capitalised mid-sentence elsewhere, unless it is in this list).
_FUNCTION_WORDS = """
    a an the this that these those there here it its it's i i'm i've i'd i'll me my mine we us our ours you your yours
    he him his she her hers they them their theirs who whom whose which what when where why how whoever whatever
    and or but nor so yet for if then than though although because since unless until while whereas as
    of in on at by to from with without within into onto upon about above below under over after before during
    between among through throughout across along around against toward towards beyond despite except like near
    not no yes all any some each every both either neither none many much more most few fewer less least several
    other another such same own only just also even still again ever never always often sometimes soon later
    once twice first second third next last finally meanwhile however therefore thus hence instead otherwise
    indeed perhaps maybe meanwhile afterwards afterward eventually suddenly together overall
    is are was were be been being am do does did done doing have has had having will would shall should can could
    may might must ought let lets
    in-between one ones someone somebody something anyone anybody anything everyone everybody everything nobody
    nothing noone
    mr mrs ms miss dr st sir madam mister
    chapter part section scene
"""
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS.split())

_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "prof", "mt", "jr", "sr", "vs", "etc", "no"})

_SMALL_NUMBERS = {
    "zero": 0, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17,
    "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90, "dozen": 12,
}  # fmt: skip
"""Written numbers that are checked. "one" is left out: "no one", "one day", "the one who" are not counts."""
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}

# A token: a word (letters, inner apostrophes and hyphens) or a number ("1887", "3,000", "2.5", "12th", "40%").
_TOKEN = re.compile(r"\d(?:[\d,]*\d)?(?:\.\d+)?(?:st|nd|rd|th|s)?%?|[^\W\d_](?:[\w’']*[^\W_])?(?:-[^\W\d_][\w’']*)*")
_SENTENCE_OPENERS = "\"'“‘([{*-–—•#>"


def _tokens(text: str) -> list[tuple[str, bool]]:
    """Each word or number, with whether it opens a sentence (start, newline, or after . ! ? … :)."""
    tokens: list[tuple[str, bool]] = []
    last_end = 0
    previous = ""
    for match in _TOKEN.finditer(text):
        gap = text[last_end : match.start()].rstrip(" \t" + _SENTENCE_OPENERS)
        opens = (not gap and not previous) or gap.endswith(("\n", ".", "!", "?", "…", ":"))
        if opens and gap == "." and (previous.lower() in _ABBREVIATIONS or len(previous) == 1):
            opens = False  # "Mr. Silva", "J. Silva": the period closes an abbreviation, not a sentence
        tokens.append((match.group(0), opens))
        last_end, previous = match.end(), match.group(0)
    return tokens


def _norm(word: str) -> str:
    word = word.lower().replace("’", "'")
    return word[:-2] if word.endswith("'s") else word.rstrip("'")


def proper_nouns(summary: str) -> list[str]:
    """The summary's proper nouns, in order, each once.

    A word counts when it is capitalised where a sentence does not start, or at a sentence start while the same word
    is also capitalised mid-sentence elsewhere in the summary, and it is not a common function word. Sentence-initial
    capitals alone prove nothing ("Meanwhile", "Rain"), so a name met only at sentence starts is missed: the check
    prefers missing an invention to rejecting a faithful summary.
    """
    found: dict[str, str] = {}
    for token, opens in _tokens(summary):
        if opens or not token[0].isupper():
            continue
        for piece in token.split("-"):
            key = _norm(piece)
            if piece[:1].isupper() and key not in FUNCTION_WORDS and key not in found:
                found[key] = piece
    return list(found.values())


def _number_values(text: str) -> dict[float, str]:
    """Numbers written in digits or words, by value: "3,000" and "three thousand" are the same number."""
    values: dict[float, str] = {}
    words = [token for token, _opens in _tokens(text)]
    index = 0
    while index < len(words):
        word = words[index]
        if word[0].isdigit():
            digits = re.sub(r"(st|nd|rd|th|s)?%?$", "", word).replace(",", "")
            with contextlib.suppress(ValueError):  # "1,2,3" is no number
                values.setdefault(float(digits), word)
            index += 1
            continue
        value, used = _written_number(words, index)
        if used:
            values.setdefault(float(value), " ".join(words[index : index + used]))
            index += used
        else:
            index += 1
    return values


def _written_number(words: list[str], index: int) -> tuple[int, int]:
    """The value of a written number starting at ``words[index]`` ("twenty-three", "two hundred") and its length."""
    total, current, used = 0, 0, 0
    while index + used < len(words):
        pieces = words[index + used].lower().split("-")
        if not all(piece in _SMALL_NUMBERS or piece in _SCALES for piece in pieces):
            break
        for piece in pieces:
            if piece in _SMALL_NUMBERS:
                current += _SMALL_NUMBERS[piece]
            elif piece in _SCALES:
                current = max(current, 1) * _SCALES[piece]
                if _SCALES[piece] >= 1000:
                    total, current = total + current, 0
        used += 1
    return total + current, used


def _source_words(source: str) -> set[str]:
    words: set[str] = set()
    for token, _opens in _tokens(source):
        key = _norm(token)
        words.add(key)
        words.update(key.split("-"))
    return words


def invented_terms(summary: str, source: str) -> list[str]:
    """Proper nouns and numbers in ``summary`` that ``source`` never mentions (as written in the summary).

    Names match ignoring case and a possessive or plural "s" ("Silva's", "the Silvas"); numbers match by value, in
    digits or words ("3" and "three").
    """
    known = _source_words(source)
    invented = [
        noun
        for noun in proper_nouns(summary)
        if not {_norm(noun), _norm(noun).removesuffix("s"), _norm(noun).removesuffix("es")} & known
    ]
    numbers = _number_values(source)
    invented.extend(text for value, text in _number_values(summary).items() if value not in numbers)
    return invented


def names_nothing(summary: str, source: str, recurring: int = 3) -> bool:
    """True when the source has recurring names (said ``recurring`` times or more) and the summary uses none.

    "This helps readers connect with the content" invents nothing, and says nothing either: a chapter in which Ana
    appears on every page is not summarized without her. Names said once or twice are not required.
    """
    counts: Counter[str] = Counter()
    for token, opens in _tokens(source):
        if not opens and token[:1].isupper() and _norm(token) not in FUNCTION_WORDS:
            counts[_norm(token)] += 1
    main = {name for name, count in counts.items() if count >= recurring}
    if not main:
        return False
    used = {_norm(token) for token, _ in _tokens(summary)}
    return not (main & used)


# --- the extractive fallback ---------------------------------------------------------------------------------------

_SENTENCE = re.compile(r"[^.!?…\n]+(?:[.!?…]+[\"'”’)\]]*|\n|$)")


def sentences(text: str) -> list[str]:
    """The text's sentences, stripped; a line without an end mark (a heading, a verse line) counts as one."""
    found = [match.group(0).strip() for match in _SENTENCE.finditer(text)]
    merged: list[str] = []
    for sentence in found:
        if not re.search(r"\w", sentence):
            continue
        if merged and re.search(r"\b(?:Mr|Mrs|Ms|Dr|St|Prof|Mt|[A-Z])\.$", merged[-1]):
            merged[-1] += " " + sentence  # "Mr. Silva" was cut after the abbreviation
        else:
            merged.append(sentence)
    return merged


def _similar(a: set[str], b: set[str]) -> bool:
    """Nearly the same content words (Jaccard 0.75 or more): "the smell of bread drifted" / "... floated"."""
    return bool(a and b) and len(a & b) / len(a | b) >= 0.75


def _content_words(sentence: str) -> set[str]:
    return {_norm(token) for token, _ in _tokens(sentence) if len(token) > 2 and _norm(token) not in FUNCTION_WORDS}


def central_sentences(text: str, max_words: int = 60, max_sentences: int = 3, lead: int = 0) -> str:
    """The text's most central sentences, in their own order, within about ``max_words`` words.

    A sentence is central when its words recur in the rest of the text (summed overlap with every other sentence,
    computed through document frequencies so a long part costs linear time), discounted by its length so long
    sentences do not win by size alone. The first ``lead`` sentences are always taken (a chapter's opening usually
    says who and where). Every word comes from the text, so nothing can be invented.
    """
    candidates = sentences(text)
    if not candidates:
        return ""
    words = [_content_words(sentence) for sentence in candidates]
    frequency: Counter[str] = Counter(word for bag in words for word in bag)
    scores = [
        sum(frequency[word] - 1 for word in bag) / math.log(2 + len(sentence.split()))
        for bag, sentence in zip(words, candidates, strict=True)
    ]
    opening = list(range(min(lead, len(candidates))))
    ranked = opening + sorted(
        (index for index in range(len(candidates)) if index not in opening), key=lambda index: (-scores[index], index)
    )
    chosen: list[int] = []
    used = 0
    for index in ranked:
        length = len(candidates[index].split())
        if chosen and (used + length > max_words or len(chosen) >= max_sentences):
            continue
        if any(_similar(words[index], words[other]) for other in chosen):
            continue  # the same sentence again, or nearly: a summary says a thing once
        chosen.append(index)
        used += length
        if used >= max_words or len(chosen) >= max_sentences:
            break
    picked = " ".join(candidates[index] for index in sorted(chosen))
    tokens = picked.split()
    if len(tokens) > max_words + max_words // 2:  # one huge sentence: cut at a word, say so
        picked = " ".join(tokens[:max_words]).rstrip(",;:") + " …"
    return picked


# --- tidying a model's draft ----------------------------------------------------------------------------------------

_ABOUT_ITSELF = re.compile(
    r"\b(?:summar\w*|this passage|the passage|the (?:text|article|excerpt)|the author|the writer|rewording|"
    r"I've|I have|I would|I will|you|your|readers?|as an ai)\b",
    re.IGNORECASE,
)


def tidy_summary(draft: str) -> str:
    """A model's draft without what is not summary: talk about the summary itself, repeats, a sentence cut short.

    Removal is right here (unlike for invented names): "This summary is concise." says nothing about the text, so
    dropping it loses nothing, and a sentence cut off by the token limit reads as an error.
    """
    text = draft.replace("**", "").strip()
    kept: list[str] = []
    seen: list[set[str]] = []
    for sentence in sentences(text):
        words = _content_words(sentence)
        if any(_similar(words, other) for other in seen) or _ABOUT_ITSELF.search(sentence):
            continue
        if re.match(r"^(?:\d+\.|[-*•])?\s*$", sentence):
            continue
        seen.append(words)
        kept.append(re.sub(r"^(?:\d+\.|[-*•])\s+", "", sentence))
    if len(kept) > 1 and not re.search(r"[.!?…][\"'”’)\]]*$", kept[-1]):
        kept.pop()  # cut off by the token limit
    return " ".join(kept)
