"""Synopsis of a 20-chapter, ~20,000-word manuscript: every chapter kept, nothing invented, how fast, how cached.

The manuscript is built at run time, deterministically: 20 chapters, each in a different city with its own named
people, plot and numbers, written from templates with varied sentences (no data set needed, and every name in it is
known, so an invented one is easy to count). Then ``penwright generate --task summary --form synopsis`` runs on it in
this process with the default (fast) model settings and a cold cache, and again after one chapter is edited.

Reported (``bench/results/synopsis.json``):
- ``titles_in_synopsis``: share of chapter titles that appear in the synopsis, in order (goal: 1.0);
- ``invented_proper_nouns``: proper nouns (and numbers) in the synopsis that the manuscript never mentions (goal: 0),
  counted by ``assistant.core.grounding`` over each part's summary against its chapter, and over the overall summary
  against the manuscript;
- ``unknown_capitalised_words``: the same, counted more strictly, independent of the check that drives the
  regeneration: every capitalised word of the synopsis, sentence starts included, that the manuscript never uses;
- ``rouge_l_vs_first_sentences``: mean ROUGE-L F1 of each part's summary against that chapter's first three
  sentences (our own LCS implementation, ``bench/eval.py``'s ``rouge_l``: no ROUGE package is installed);
- ``sources``: how many part summaries the model wrote first time, regenerated, or replaced by the extractive
  fallback;
- ``full_s``: wall time of the whole synopsis (goal: under 120 s for 20,000 words on 2 cores), with the process's
  CPU time (``full_cpu_s``: about 2x the wall time on an idle 2-core machine; far less when other work shares the
  cores), the model's own time, and the prompt tokens prefilled and tokens written;
- ``one_chapter_edited_s``: wall time again after editing one chapter (only that chapter and the whole are redone);
- the load average before and after, since the machine may be shared.

Run: ``HF_HUB_OFFLINE=1 .venv/bin/python bench/synopsis_eval.py [--chapters 20] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval import rouge_l  # noqa: E402  (bench/eval.py, next to this file)

RESULTS = Path(__file__).with_name("results") / "synopsis.json"

# (city, heroine/hero, friend or rival, a place in the city, what the hero came for, an object)
CHAPTERS = [
    ("Lisbon", "Ana Ferreira", "Tiago Moura", "the tram depot", "a grandfather's lost letters", "a brass key"),
    ("Oslo", "Ingrid Halvorsen", "Magnus Berg", "the fjord ferry", "a missing violin", "a wool scarf"),
    ("Kyoto", "Haruto Sato", "Yui Tanaka", "the bamboo garden", "a stolen tea bowl", "a paper lantern"),
    ("Nairobi", "Wanjiru Kamau", "Otieno Odhiambo", "the railway museum", "a forged land deed", "a leather satchel"),
    ("Lima", "Rosa Quispe", "Mateo Salazar", "the fish market", "a brother's fishing boat", "a silver ring"),
    ("Krakow", "Zofia Nowak", "Piotr Wrobel", "the salt mine", "a printing press", "a wooden chess set"),
    ("Cairo", "Amira Hassan", "Karim Mansour", "the spice bazaar", "an old map of the river", "a copper lamp"),
    ("Dublin", "Siobhan Byrne", "Declan Walsh", "the harbour pub", "a lost manuscript", "a green umbrella"),
    ("Hanoi", "Linh Nguyen", "Minh Tran", "the lake pagoda", "a mother's recipe book", "a bamboo bicycle"),
    ("Montreal", "Chloe Tremblay", "Etienne Gagnon", "the ice rink", "a hockey trophy", "a red toque"),
    ("Istanbul", "Elif Demir", "Murat Kaya", "the ferry pier", "a carpet her father wove", "a glass amulet"),
    ("Reykjavik", "Sigrun Jonsdottir", "Bjorn Olafsson", "the hot spring", "a fishing licence", "a knitted glove"),
    ("Valparaiso", "Camila Rojas", "Ignacio Vera", "the funicular", "a painting of the bay", "a blue kite"),
    ("Tbilisi", "Nino Beridze", "Giorgi Kapanadze", "the sulphur baths", "a family vineyard", "a clay jug"),
    ("Edinburgh", "Fiona MacLeod", "Callum Reid", "the castle esplanade", "a debt of honour", "a tartan shawl"),
    ("Marrakesh", "Yasmine Alaoui", "Omar Benali", "the dye souk", "a caravan ledger", "a brass tray"),
    ("Seville", "Lucia Moreno", "Javier Ortega", "the orange courtyard", "a flamenco school", "a fan of lace"),
    ("Helsinki", "Aino Virtanen", "Eero Laine", "the sauna by the sea", "a sunken sailboat", "a birch whistle"),
    ("Manila", "Maria Santos", "Jose Reyes", "the old walled city", "a jeepney business", "a woven hat"),
    ("Vienna", "Klara Huber", "Felix Gruber", "the coffee house", "a lost waltz score", "a pocket watch"),
]
WRITTEN = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]

OPENING = [
    "{hero} arrived in {city} on a grey morning, looking for {goal}.",
    "{hero} had come to {city} for one reason: {goal}.",
]
SECOND = [
    "At {place} {hero_first} met {friend}, who knew more about {goal} than anyone in {city}.",
    "{friend} was waiting at {place} and promised to help {hero_first} find {goal}.",
]
THIRD = [
    "Together they searched {city} for {days} days, and {hero_first} kept {object} close the whole time.",
    "For {days} days the two of them walked the streets of {city}, carrying {object} for luck.",
]
MIDDLE = [
    "The streets of {city} were wet, and the smell of bread drifted from a bakery near {place}.",
    "{hero_first} wrote in a notebook every evening, listing what had been learned about {goal}.",
    "{friend_first} told stories about {city} that made {hero_first} laugh despite everything.",
    "An old woman near {place} said that {goal} had been seen there many years ago.",
    "The clerk at the records office shook his head and closed the heavy ledger.",
    "{hero_first} turned {object} over and wondered who had owned it before.",
    "Rain fell on the roofs of {city} all afternoon, and the two of them waited in a doorway.",
    "{friend_first} knew a shortcut through the back streets behind {place}.",
    "At night the lights of {city} reflected in the water like scattered coins.",
    "A boy selling newspapers pointed them towards a shop that had closed long ago.",
    "{hero_first} remembered a grandmother's voice describing {city} in the old days.",
    "They ate soup in a small kitchen while {friend_first} drew a map on a napkin.",
    "Someone had scratched a name into the wall, but the letters were too worn to read.",
    "The wind from the water was cold, and {hero_first} pulled a coat tighter.",
    "{friend_first} argued with a shopkeeper who claimed to know nothing about {goal}.",
    "Every clue seemed to lead back to {place}, as if the place itself kept a secret.",
    "{hero_first} paid {money} coins for a photograph that showed {place} long ago.",
    "In the photograph a young man stood beside {object}, smiling at the camera.",
    "They slept badly, and in the morning {city} was covered in a thin mist.",
    "A letter arrived at the guest house, unsigned, telling them to stop asking questions.",
    "{friend_first} said the letter only proved they were close to the truth.",
    "The church bells of {city} rang the hour as they crossed the square.",
    "{hero_first} found a second clue hidden inside the lining of an old coat.",
    "They followed a cart loaded with crates down to the water's edge.",
    "An argument broke out between {friend_first} and his cousin about the past.",
    "The cousin finally admitted that his father had sold {goal} to a stranger.",
    "{hero_first} felt anger, then pity, as the cousin told the rest of the story.",
    "A storm closed the roads out of {city}, so they had one more day to search.",
    "They counted {count} doors along the lane before they found the right one.",
    "Behind the door was a dusty room full of forgotten things.",
]
ENDING = [
    "In the end {hero_first} found {goal} at {place}, hidden where no one had thought to look.",
    "On the last day {hero_first} and {friend_first} recovered {goal} and said goodbye at {place}.",
]
CLOSING = [
    "{hero_first} left {city} with a promise to return, and {friend_first} kept {object} as a memory.",
    "When the train left {city}, {hero_first} gave {object} to {friend_first} as a keepsake.",
]


def build_chapter(number: int, words_per_chapter: int = 1000) -> tuple[str, str]:
    """One chapter (title, text): a heading, three plot sentences, varied middle sentences, an ending."""
    city, hero, friend, place, goal, thing = CHAPTERS[(number - 1) % len(CHAPTERS)]
    rng = random.Random(number)
    slots = {
        "city": city,
        "hero": hero,
        "hero_first": hero.split()[0],
        "friend": friend,
        "friend_first": friend.split()[0],
        "place": place,
        "goal": goal,
        "object": thing,
        "days": rng.choice(WRITTEN),
        "money": str(rng.randint(12, 90)),
        "count": rng.choice(WRITTEN),
    }
    sentences = [rng.choice(OPENING), rng.choice(SECOND), rng.choice(THIRD)]
    body: list[str] = [" ".join(sentence.format(**slots) for sentence in sentences)]
    words = sum(len(paragraph.split()) for paragraph in body)
    closing = " ".join(
        (rng.choice(ENDING).format(**slots), rng.choice(CLOSING).format(**slots))
    )  # fmt: skip
    while words < words_per_chapter - len(closing.split()):
        paragraph = " ".join(sentence.format(**slots) for sentence in rng.sample(MIDDLE, rng.randint(3, 6)))
        body.append(paragraph)
        words += len(paragraph.split())
    body.append(closing)
    title = f"Chapter {number}: {city}"
    return title, f"{title}\n\n" + "\n\n".join(body) + "\n"


def build_manuscript(chapters: int = 20) -> tuple[str, list[str]]:
    """The whole text and its chapter titles, in order."""
    built = [build_chapter(number) for number in range(1, chapters + 1)]
    return "\n".join(text for _title, text in built), [title for title, _text in built]


def first_sentences(text: str, count: int = 3) -> str:
    from assistant.core.grounding import sentences

    body = text.split("\n", 2)[-1]
    return " ".join(sentences(body)[:count])


def unknown_capitalised(synopsis: str, manuscript: str) -> list[str]:
    """Capitalised words anywhere in the synopsis (sentence starts too) that the manuscript never uses, in any case,
    leaving out function words ("She", "We"): a stricter count than the pipeline's own check, which skips words
    seen only at sentence starts."""
    from assistant.core.grounding import FUNCTION_WORDS

    known = {word.lower() for word in re.findall(r"[^\W\d_]+", manuscript)}
    words = re.findall(r"\b[A-Z][^\W\d_]*", synopsis.replace("## The whole", ""))
    return sorted({word for word in words if word.lower() not in known and word.lower() not in FUNCTION_WORDS})


def load() -> float:
    return round(os.getloadavg()[0], 2)


def run(chapters: int, out: Path) -> dict[str, object]:
    from assistant.core.grounding import invented_terms
    from assistant.core.prompts import SummaryRequest
    from assistant.core.settings import SamplerSettings
    from assistant.core.synopsis import SummaryCache
    from assistant.engine.generate import CancelToken, Engine
    from assistant.engine.models import load_model
    from assistant.engine.tasks import summarize, summarize_document

    text, titles = build_manuscript(chapters)
    load_before = load()
    engine = Engine(load_model(device="cpu"))
    settings = SamplerSettings(seed=1)  # the app's defaults; a fixed seed so a rerun writes the same synopsis
    with tempfile.TemporaryDirectory(prefix="penwright-synopsis-") as folder:
        cache = SummaryCache(Path(folder) / "summaries.sqlite3")
        started = time.perf_counter()

        def progress(stage: str, _fraction: float | None) -> None:
            print(f"{time.perf_counter() - started:7.1f} s  {stage}", file=sys.stderr, flush=True)

        cpu_started = time.process_time()
        request = SummaryRequest(text, form="synopsis")
        stream = summarize(engine, request, settings, CancelToken(), progress, cache=cache)
        stream.text()
        full_s = time.perf_counter() - started
        cpu_s = time.process_time() - cpu_started
        synopsis, stats = stream.synopsis, stream.stats
        rendered = synopsis.to_text("synopsis")

        edited_chapter = chapters // 2
        # One new sentence at the end of the first paragraph of a middle chapter, as a writer's small edit.
        anchor = text.index(titles[edited_chapter - 1])
        paragraph_end = text.index("\n\n", text.index("\n\n", anchor) + 2)
        edited = text[:paragraph_end] + " The rain stopped for an hour that evening." + text[paragraph_end:]
        started = time.perf_counter()
        again = summarize_document(engine, edited, settings, CancelToken(), progress, cache=cache)
        edited_s = time.perf_counter() - started
        redone = sum(not part.cached for part in again.parts)

    parts_text = {part.title: text[part.start : part.end] for part in synopsis.parts}
    invented: list[str] = []
    for part in synopsis.parts:
        invented.extend(invented_terms(part.summary, parts_text[part.title]))
    invented.extend(invented_terms(synopsis.overall, text))
    positions = [rendered.find(title) for title in titles]
    in_order = all(b > a >= 0 for a, b in zip(positions, positions[1:], strict=False))
    found = sum(position >= 0 for position in positions)
    rouge = [rouge_l(part.summary, first_sentences(parts_text[part.title])) for part in synopsis.parts]
    sources = {
        source: sum(part.source == source for part in synopsis.parts)
        for source in ("model", "regenerated", "extractive")
    }
    words = len(text.split())
    report: dict[str, object] = {
        "words": words,
        "parts": len(synopsis.parts),
        "titles_in_synopsis": round(found / len(titles), 4),
        "titles_in_order": in_order,
        "invented_proper_nouns": len(invented),
        "invented": invented,
        "unknown_capitalised_words": unknown_capitalised(rendered, text),
        "rouge_l_vs_first_sentences": round(statistics.mean(rouge), 4) if rouge else 0.0,
        "rouge_l_implementation": "own LCS (bench/eval.py rouge_l)",
        "sources": sources,
        "overall_source": synopsis.overall_source,
        "full_s": round(full_s, 1),
        "full_cpu_s": round(cpu_s, 1),
        "model_s": round(stats.total_s, 1),
        "prefill_tokens": stats.prefill_tokens,
        "new_tokens": stats.new_tokens,
        "words_per_s": round(words / full_s, 1),
        "one_chapter_edited_s": round(edited_s, 1),
        "parts_redone_after_edit": redone,
        "edited_complete": again.complete,
        "weights": engine.loaded.weights,
        "decoding": engine.decode_path,
        "sampler": settings.to_dict(),
        "cpu_count": os.cpu_count(),
        "torch_threads": _torch_threads(),
        "load_average_before": load_before,
        "load_average_after": load(),
        "synopsis": rendered,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return report


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chapters", type=int, default=20)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    report = run(args.chapters, args.out)
    summary = {key: value for key, value in report.items() if key not in ("synopsis", "sampler")}
    json.dump(summary, sys.stdout)
    print()


if __name__ == "__main__":
    main()
