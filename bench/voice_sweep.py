"""Which training defaults learn a voice best? Rank, learning rate and target layers compared on held-out perplexity.

The same texts as ``bench/voice_eval.py`` (Genesis as the writer's texts, Exodus 1-6 never seen). Every setting trains
for the same number of steps (``--steps``, 256-token windows, the same order of windows), so a busy machine changes
the seconds, not the result; each setting's seconds per step are reported beside its perplexity, measured in the
same run, because the user's budget is minutes, not steps. Written to ``bench/results/voice_sweep.json``.

Run: ``HF_HUB_OFFLINE=1 .venv/bin/python bench/voice_sweep.py [--steps 80]``. Needs ``apt-get install bible-kjv``.
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
from voice_eval import as_paragraphs, chapter, load_average  # noqa: E402

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if shutil.which("bible") is None:
        print("voice_sweep: needs the KJV: apt-get install bible-kjv", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="penwright-voice-sweep-"))
    os.environ["PENWRIGHT_PROFILE"] = str(work / "profile")
    from assistant.core.voice_texts import count_words, load_texts, paragraphs, windows
    from assistant.engine.voices import TrainingOptions, load_for_training, perplexity, train_voice

    folder = work / "genesis"
    folder.mkdir()
    words, number = 0, 1
    while words < args.words and number <= 50:
        text = as_paragraphs(chapter("Genesis", number))
        words += count_words(text)
        (folder / f"genesis-{number:02d}.txt").write_text(text, encoding="utf-8")
        number += 1
    texts = load_texts([folder])
    exodus = [p for n in range(1, 7) for p in paragraphs(as_paragraphs(chapter("Exodus", n)))]
    loaded = load_for_training(device="cpu")

    def encode(text: str) -> list[int]:
        return list(loaded.tokenizer(text, add_special_tokens=False)["input_ids"])

    eval_windows = windows(exodus, encode, 256)
    base = perplexity(loaded.model, eval_windows, loaded.input_device)
    print(f"base perplexity on Exodus 1-6: {base:.2f}", flush=True)
    rows = []
    load_before = load_average()
    for index, setting in enumerate(SETTINGS):
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
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {
        "what": "training settings compared at the same number of steps on the KJV (train Genesis, measure Exodus 1-6)",
        "cpu": cpu_class.cpu_model(),
        "steps": args.steps,
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
