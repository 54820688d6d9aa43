"""Which training defaults learn a voice best? Rank, learning rate and target layers compared on held-out perplexity.

The same texts as ``bench/voice_eval.py`` (Genesis as the writer's texts, Exodus 1-6 never seen). Every setting trains
for the same number of steps (``--steps``, 256-token windows, the same order of windows), so a busy machine changes
the seconds, not the result; each setting's seconds per step are reported beside its perplexity, measured in the
same run, because the user's budget is minutes, not steps. Written to ``bench/results/voice_sweep.json``.

Run: ``HF_HUB_OFFLINE=1 .venv/bin/python bench/voice_sweep.py [--steps 80]``; with ``--minutes 8 --only 0,6 --out
FILE``, chosen settings train for the app's time budget and are measured in use (int4 perplexity, decode speed).
Needs ``apt-get install bible-kjv``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cpu_class  # noqa: E402  (bench/, the script's own folder)
from voice_eval import book_paragraphs, decode_speeds, load_average, write_genesis  # noqa: E402

RESULTS = Path(__file__).with_name("results") / "voice_sweep.json"
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
EVERY = (*ATTENTION, "gate_proj", "up_proj", "down_proj")
SETTINGS: list[dict[str, Any]] = [
    {"rank": 8, "learning_rate": 1e-3, "targets": ("q_proj", "v_proj")},  # the defaults
    {"rank": 8, "learning_rate": 5e-4, "targets": ("q_proj", "v_proj")},
    {"rank": 8, "learning_rate": 2e-3, "targets": ("q_proj", "v_proj")},
    {"rank": 4, "learning_rate": 1e-3, "targets": ("q_proj", "v_proj")},
    {"rank": 16, "learning_rate": 1e-3, "targets": ("q_proj", "v_proj")},
    {"rank": 8, "learning_rate": 1e-3, "targets": ATTENTION},
    {"rank": 8, "learning_rate": 1e-3, "targets": EVERY},
]


def in_use(voice: str, eval_windows: list[list[int]], prompt: str) -> dict[str, Any]:
    """The voice in the default 4-bit model, as the app uses it: held-out perplexity, and decode speed without and
    with it (alternating rounds)."""
    from assistant.engine.generate import Engine
    from assistant.engine.models import load_model
    from assistant.engine.voices import perplexity

    engine = Engine(load_model(device="cpu"))
    engine.set_voice(voice)
    voiced = perplexity(engine.model, eval_windows, "cpu")
    speed = decode_speeds(engine, prompt, 3, voice)
    return {"exodus_perplexity_int4": round(voiced, 3), "decode_tok_s": speed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="train each setting for the app's time budget instead of --steps, and measure it in use (int4, speed)",
    )
    parser.add_argument("--only", type=str, default="", help="comma-separated indices of SETTINGS to run")
    args = parser.parse_args()
    if shutil.which("bible") is None:
        print("voice_sweep: needs the KJV: apt-get install bible-kjv", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="penwright-voice-sweep-"))
    os.environ["PENWRIGHT_PROFILE"] = str(work / "profile")
    from assistant.core.voice_texts import load_texts, windows
    from assistant.engine.voices import TrainingOptions, load_for_training, perplexity, train_voice

    write_genesis(work / "genesis", args.words)
    texts = load_texts([work / "genesis"])
    exodus = book_paragraphs("Exodus", 6)
    loaded = load_for_training(device="cpu")

    def encode(text: str) -> list[int]:
        return list(loaded.tokenizer(text, add_special_tokens=False)["input_ids"])

    eval_windows = windows(exodus, encode, 256)
    base = perplexity(loaded.model, eval_windows, loaded.input_device)
    print(f"base perplexity on Exodus 1-6: {base:.2f}", flush=True)
    rows = []
    load_before = load_average()
    chosen = [int(index) for index in args.only.split(",")] if args.only else range(len(SETTINGS))
    for index in chosen:
        setting = SETTINGS[index]
        if args.minutes:  # as the app trains: the time budget, its default checks
            options = TrainingOptions(minutes=args.minutes, sample_tokens=1, **setting)
        else:
            options = TrainingOptions(
                max_steps=args.steps, minutes=600, evaluations=4, max_eval_windows=12, sample_tokens=1, **setting
            )
        started = time.perf_counter()
        report = train_voice(loaded, texts, f"sweep-{index}", options)
        seconds = time.perf_counter() - started
        from assistant.engine.models import load_model

        voiced = load_model(device="cpu", dtype="float32", quantize="none", voice=f"sweep-{index}")
        exodus_perplexity = perplexity(voiced.model, eval_windows, voiced.input_device)
        del voiced
        row = {
            **{key: list(value) if isinstance(value, tuple) else value for key, value in setting.items()},
            "exodus_perplexity": round(exodus_perplexity, 3),
            "lower": round(1 - exodus_perplexity / base, 4),
            "held_out_genesis": report.perplexity_after,
            "seconds_per_step": round(report.minutes * 60 / report.steps, 2),
            "tokens_per_s": report.tokens_per_s,
            "wall_s": round(seconds, 1),
            "steps": report.steps,
        }
        if args.minutes:
            row.update(in_use(f"sweep-{index}", eval_windows, prompt=exodus[0]))
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {
        "what": "training settings compared at the same number of steps on the KJV (train Genesis, measure Exodus 1-6)",
        "cpu": cpu_class.cpu_model(),
        "steps": None if args.minutes else args.steps,
        "minutes": args.minutes,
        "window_tokens": 256,
        "base_exodus_perplexity": round(base, 3),
        "rows": rows,
        "load_average": {"before": load_before, "after": load_average()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
