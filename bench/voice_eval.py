"""Does "Learn my voice" learn a voice? The King James Version (Debian's ``bible-kjv-text``) as the writer's texts.

Training texts: Genesis 1-N, one .txt file a chapter, four verses a paragraph (no verse numbers), until about
``--words`` words (20,000 by default); they go through ``assistant.core.voice_texts`` like anyone's texts, so 10% of
their paragraphs are held out to pick the best checkpoint. Evaluation texts: chapters the voice never saw, from
another book in the same voice (Exodus 1-6 by default), so nothing of them leaks into the checkpoint choice.

Reported (``bench/results/voice.json``):
- ``perplexity``: the bundled model's held-out perplexity on the evaluation chapters (256-token windows) in full
  precision, without and with the voice, and with the voice at the default int4 settings (goal: 25% lower);
- ``using``: the voice switched on in the running default (4-bit) model: how long the switch takes against a model
  load, and decode tokens/s without and with it, alternating rounds in the same process (goal: the same speed);
- ``style``: a function-word profile distance. For each of ``--prompts`` paragraphs of the evaluation chapters, the
  model continues the paragraph's first verse greedily (64 tokens, repetition penalty 1.1, the default int4
  settings), without and with the voice; the relative frequencies of ``FUNCTION_WORDS`` over all continuations are
  compared to those of the evaluation chapters themselves. Why function words: they carry an author's style and not
  the topic (Mosteller and Wallace on the Federalist papers, Burrows' Delta), and a continuation of the same
  paragraph shares its topic either way; the list is English's commonest function words plus the KJV's own archaic
  ones (thou, thee, thy, ye, unto, hath, shall ...), because those are exactly where a voice shows. The distance is
  half the L1 distance between the two profiles (the share of function-word mass in the wrong place: 0 same, 1
  disjoint). Goal: the voiced continuations closer than the base model's;
- ``training``: minutes, steps, epochs, tokens/s and the process's peak memory (RSS) for ``--words`` words, with the
  load average before and after (the 2 cores may be shared with other work), and the CPU.

Run: ``HF_HUB_OFFLINE=1 .venv/bin/python bench/voice_eval.py [--words 20000] [--minutes 8] [--out FILE]``.
Needs ``apt-get install bible-kjv`` (the ``bible`` reader and ``bible-kjv-text``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cpu_class  # noqa: E402  (bench/, the script's own folder)

RESULTS = Path(__file__).with_name("results") / "voice.json"
_FUNCTION_WORD_TEXT = (
    "the and of to a in that it is was he for on are as with his they at be this from i have or by one had not but "
    "what all were when we there can an your which their if do will each about how up out them then she many some so "
    "these would other into has her him my me no than who its now over also our after any may such only very "
    # the KJV's own function words
    "unto thou thee thy thine ye hath shall shalt doth art saith lo behold thereof wherefore upon neither nor"
)
FUNCTION_WORDS = tuple(_FUNCTION_WORD_TEXT.split())
_WORD = re.compile(r"[a-z]+")


def chapter(book: str, number: int) -> list[str]:
    """The verses of one chapter, without their numbers (``bible`` prints "  1 In the beginning ...", wrapped)."""
    text = subprocess.run(["bible", f"{book}{number}:1-200"], capture_output=True, text=True, check=True).stdout
    verses: list[str] = []
    for line in text.splitlines()[3:]:  # a blank line, "Genesis 1", a blank line
        match = re.match(r"^\s+\d+\s+(.*)$", line)
        if match:
            verses.append(match.group(1).strip())
        elif verses and line.strip():
            verses[-1] += " " + line.strip()
    return verses


def as_paragraphs(verses: list[str], per_paragraph: int = 4) -> str:
    return "\n\n".join(" ".join(verses[i : i + per_paragraph]) for i in range(0, len(verses), per_paragraph))


def write_genesis(folder: Path, words: int) -> int:
    """Genesis from chapter 1 on, one .txt file a chapter, until about ``words`` words; returns the chapter count."""
    from assistant.core.voice_texts import count_words

    folder.mkdir(parents=True)
    written, number = 0, 0
    while written < words and number < 50:
        number += 1
        text = as_paragraphs(chapter("Genesis", number))
        written += count_words(text)
        (folder / f"genesis-{number:02d}.txt").write_text(text, encoding="utf-8")
    return number


def book_paragraphs(book: str, chapters: int) -> list[str]:
    """The first chapters of a book as paragraphs (the evaluation text)."""
    from assistant.core.voice_texts import paragraphs

    return [p for n in range(1, chapters + 1) for p in paragraphs(as_paragraphs(chapter(book, n)))]


def profile(texts: list[str]) -> dict[str, float]:
    counts = Counter(word for text in texts for word in _WORD.findall(text.lower()) if word in FUNCTION_WORDS)
    total = sum(counts.values()) or 1
    return {word: counts[word] / total for word in FUNCTION_WORDS}


def distance(first: dict[str, float], second: dict[str, float]) -> float:
    return 0.5 * sum(abs(first[word] - second[word]) for word in FUNCTION_WORDS)


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def continuations(engine: Any, prompts: list[str], tokens: int) -> list[str]:
    from assistant.core.prompts import Prompt
    from assistant.core.settings import SamplerSettings

    settings = SamplerSettings(temperature=0, max_new_tokens=tokens, repetition_penalty=1.1)
    return [engine.generate(Prompt(text=prompt), settings) for prompt in prompts]


def decode_speeds(engine: Any, prompt: str, rounds: int, voice: str = "kjv") -> dict[str, Any]:
    """Decode tokens/s without and with the voice, alternating rounds in one process (128 tokens each, sampled so
    no stop string ends a round early; the median of the rounds)."""
    from statistics import median

    from assistant.core.prompts import Prompt
    from assistant.core.settings import SamplerSettings

    settings = SamplerSettings(temperature=0.8, max_new_tokens=128, seed=1)
    speeds: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(rounds):
        for label, name in (("without", None), ("with", voice)):
            engine.set_voice(name)
            engine.generate(Prompt(text=prompt), settings)
            speeds[label].append(engine.last_stats.tok_s)
    engine.set_voice(voice)
    return {
        "without": round(median(speeds["without"]), 1),
        "with": round(median(speeds["with"]), 1),
        "ratio": round(median(speeds["with"]) / median(speeds["without"]), 3),
        "rounds": {label: [round(value, 1) for value in values] for label, values in speeds.items()},
        "decode_path": engine.decode_path,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=20_000)
    parser.add_argument("--minutes", type=float, default=None, help="time budget (default: the app's default)")
    parser.add_argument("--eval-book", default="Exodus")
    parser.add_argument("--eval-chapters", type=int, default=6)
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--reuse", action="store_true", help="measure the voice 'kjv' already in PENWRIGHT_PROFILE (no training)"
    )
    parser.add_argument("--eval-threads", type=int, default=None, help="torch threads for the measurements")
    parser.add_argument("--speed-rounds", type=int, default=5, help="alternating decode rounds without/with the voice")
    args = parser.parse_args()
    if shutil.which("bible") is None:
        print("voice_eval: needs the KJV: apt-get install bible-kjv", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="penwright-voice-eval-"))
    os.environ.setdefault("PENWRIGHT_PROFILE", str(work / "profile"))
    from assistant.core.voice_texts import count_words, load_texts
    from assistant.engine.models import load_model
    from assistant.engine.voices import TrainingOptions, VoiceReport, load_for_training, perplexity, train_voice

    texts_folder = work / "genesis"
    chapters = write_genesis(texts_folder, args.words)
    held_out_paragraphs = book_paragraphs(args.eval_book, args.eval_chapters)
    texts = load_texts([texts_folder])
    print(
        f"{texts.words:,} training words in {chapters} chapters; evaluation {args.eval_book} 1-"
        f"{args.eval_chapters}: {sum(count_words(p) for p in held_out_paragraphs):,} words",
        flush=True,
    )

    load_before = load_average()
    loaded = load_for_training(device="cpu")
    import torch

    training_threads = torch.get_num_threads()
    if args.eval_threads:  # two threads stall each other when another process is busy on the same two cores
        torch.set_num_threads(args.eval_threads)

    tokenizer = loaded.tokenizer

    def encode(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    from assistant.core.voice_texts import windows

    eval_windows = windows(held_out_paragraphs, encode, 256)
    base_perplexity = perplexity(loaded.model, eval_windows, loaded.input_device)
    print(f"base perplexity on the evaluation chapters: {base_perplexity:.2f}", flush=True)

    options = TrainingOptions() if args.minutes is None else TrainingOptions(minutes=args.minutes)
    last = [0.0]

    def progress(item: Any) -> None:
        if item.held_out_perplexity is not None or time.monotonic() - last[0] > 30:
            last[0] = time.monotonic()
            held = f" held-out {item.held_out_perplexity:.2f}" if item.held_out_perplexity else ""
            print(
                f"  step {item.step}/{item.steps} loss {item.loss:.3f} {item.tokens_per_s:.0f} tok/s "
                f"{item.seconds_left / 60:.1f} min left{held}",
                flush=True,
            )

    if args.reuse:
        from assistant.engine.voices import read_voice

        report = VoiceReport(**read_voice("kjv").report)
    else:
        torch.set_num_threads(training_threads)
        report = train_voice(loaded, texts, "kjv", options, progress=progress, replace=True)
        if args.eval_threads:
            torch.set_num_threads(args.eval_threads)
    load_after = load_average()
    print(f"trained: {report.minutes:.2f} min, {report.steps} steps, peak {report.peak_memory_mb:.0f} MB", flush=True)

    voiced_fp32 = load_model(device="cpu", dtype="float32", quantize="none", voice="kjv")
    voice_perplexity = perplexity(voiced_fp32.model, eval_windows, voiced_fp32.input_device)
    # The app's path: the default 4-bit model, the voice switched on and off in place (Engine.set_voice).
    from assistant.engine.generate import Engine

    load_started = time.perf_counter()
    base_int4 = load_model(device="cpu")
    engine = Engine(base_int4)
    reload_s = time.perf_counter() - load_started
    base_int4_perplexity = perplexity(base_int4.model, eval_windows, base_int4.input_device)
    step = max(1, len(held_out_paragraphs) // args.prompts)
    chosen = held_out_paragraphs[::step][: args.prompts]
    prompts = [re.split(r"(?<=[.:;?!])\s", paragraph, maxsplit=1)[0] for paragraph in chosen]
    started = time.perf_counter()
    base_texts = continuations(engine, prompts, args.tokens)
    switch_started = time.perf_counter()
    engine.set_voice("kjv")
    switch_s = time.perf_counter() - switch_started
    voice_int4_perplexity = perplexity(base_int4.model, eval_windows, base_int4.input_device)
    voice_texts = continuations(engine, prompts, args.tokens)
    generation_s = time.perf_counter() - started - switch_s
    print(
        f"perplexity fp32 {base_perplexity:.2f} -> {voice_perplexity:.2f}; int4 {base_int4_perplexity:.2f} -> "
        f"{voice_int4_perplexity:.2f}; switching the voice on took {switch_s * 1000:.0f} ms "
        f"(loading the model {reload_s:.1f} s); decoding: {engine.decode_path}",
        flush=True,
    )
    speed = decode_speeds(engine, prompts[0], args.speed_rounds)
    print(f"decode tok/s without / with the voice: {speed['without']} / {speed['with']}", flush=True)
    base_fp32_texts = continuations(Engine(loaded), prompts, args.tokens)
    voice_fp32_texts = continuations(Engine(voiced_fp32), prompts, args.tokens)
    target = profile(held_out_paragraphs)
    base_distance, voice_distance = distance(profile(base_texts), target), distance(profile(voice_texts), target)
    base_fp32_distance = distance(profile(base_fp32_texts), target)
    voice_fp32_distance = distance(profile(voice_fp32_texts), target)
    print(f"function-word distance in fp32: base {base_fp32_distance:.3f}, voice {voice_fp32_distance:.3f}")
    print(f"function-word distance to the held-out text: base {base_distance:.3f}, voice {voice_distance:.3f}")

    result = {
        "what": "Learn my voice on the KJV: train on Genesis, measure on chapters of another book never seen",
        "cpu": cpu_class.cpu_model(),
        "threads": {"training": training_threads, "measuring": torch.get_num_threads()},
        "model": report.base["name"],
        "training_texts": {"book": "Genesis", "chapters": chapters, "words": texts.words},
        "evaluation_texts": {
            "book": args.eval_book,
            "chapters": args.eval_chapters,
            "words": sum(count_words(p) for p in held_out_paragraphs),
            "windows": len(eval_windows),
        },
        "perplexity": {
            "base_fp32": round(base_perplexity, 3),
            "voice_fp32": round(voice_perplexity, 3),
            "lower_fp32": round(1 - voice_perplexity / base_perplexity, 4),
            "base_int4": round(base_int4_perplexity, 3),
            "voice_int4": round(voice_int4_perplexity, 3),
            "lower_int4": round(1 - voice_int4_perplexity / base_int4_perplexity, 4),
            "goal_lower": 0.25,
            "voice_selection_held_out": {"before": report.perplexity_before, "after": report.perplexity_after},
        },
        "style": {
            "measure": "half L1 distance between function-word frequency profiles (0 same, 1 disjoint)",
            "function_words": len(FUNCTION_WORDS),
            "prompts": len(prompts),
            "tokens_each": args.tokens,
            "base_distance_int4": round(base_distance, 4),
            "voice_distance_int4": round(voice_distance, 4),
            "base_distance_fp32": round(base_fp32_distance, 4),
            "voice_distance_fp32": round(voice_fp32_distance, 4),
            "generation_s": round(generation_s, 1),
            "example": {
                "prompt": prompts[0],
                "base_int4": base_texts[0],
                "voice_int4": voice_texts[0],
                "base_fp32": base_fp32_texts[0],
                "voice_fp32": voice_fp32_texts[0],
            },
        },
        "using": {
            "what": "the default 4-bit model with the voice beside its weights (Engine.set_voice, no reload)",
            "switch_ms": round(switch_s * 1000, 1),
            "model_load_s": round(reload_s, 2),
            "decode_tok_s": speed,
            "load_average": load_average(),
        },
        "training": {
            "minutes": report.minutes,
            "steps": report.steps,
            "best_step": report.best_step,
            "epochs": report.epochs_done,
            "tokens_per_s": report.tokens_per_s,
            "peak_memory_mb": report.peak_memory_mb,
            "options": report.options,
            "goal_minutes": 10,
            "load_average_before": load_before,
            "load_average_after": load_after,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
