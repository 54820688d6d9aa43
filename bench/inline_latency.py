"""Inline-suggestion latency on the engine: time to the first visible suggestion while a user types.

Simulates typing through ``bench/data/story.txt`` with 1,000 characters of context before the cursor: each step
adds one character and asks for a suggestion, as the editor does after a pause. Reports p50/p95 of the time to the
first suggestion text, and the prefill after one more character relative to a full prefill (KV-cache reuse).

Run: ``.venv/bin/python bench/inline_latency.py [--steps N]``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from device import bench_device

from assistant.engine.completion import InlineCompleter, InlineRequest
from assistant.engine.generate import Engine
from assistant.engine.models import load_model

STORY = Path(__file__).with_name("data") / "story.txt"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure(engine: Engine, steps: int, context_chars: int = 1000) -> dict[str, float]:
    text = STORY.read_text(encoding="utf-8")
    start = context_chars  # 1,000 characters of context before the cursor, then the typed steps
    completer = InlineCompleter(engine)

    full_prefill_ms = []
    for offset in range(3):  # a cold cache each time: the whole context is prefilled
        completer.reset()
        prefix = text[: start + offset]
        full_prefill_ms.append(completer.suggest(InlineRequest("prose", prefix)).ttft_ms)

    first_text_ms: list[float] = []
    incremental_prefill_ms: list[float] = []
    prefill_tokens: list[int] = []
    prompt_tokens: list[int] = []
    completer.reset()
    completer.suggest(InlineRequest("prose", text[:start]))
    for step in range(1, steps + 1):
        cursor = start + step
        # Like the editor: the text from a fixed start up to the cursor, so the prompt only grows at its end.
        result = completer.suggest(InlineRequest("prose", text[:cursor]), on_text=lambda _text: None)
        incremental_prefill_ms.append(result.ttft_ms)
        prefill_tokens.append(result.prefill_tokens)
        prompt_tokens.append(result.prompt_tokens)
        if result.text:
            first_text_ms.append(result.first_text_ms)
    return {
        "inline_first_text_p50_ms": round(percentile(first_text_ms, 0.5), 1),
        "inline_first_text_p95_ms": round(percentile(first_text_ms, 0.95), 1),
        "inline_full_prefill_ms": round(statistics.median(full_prefill_ms), 1),
        "inline_incremental_prefill_ms": round(statistics.median(incremental_prefill_ms), 1),
        "inline_prefill_ratio": round(
            statistics.median(incremental_prefill_ms) / statistics.median(full_prefill_ms), 3
        ),
        "inline_prefill_tokens_median": statistics.median(prefill_tokens),
        "inline_prompt_tokens_median": statistics.median(prompt_tokens),
        "inline_steps_with_text": len(first_text_ms),
        "inline_steps": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    engine = Engine(load_model(device=bench_device()))
    print(json.dumps(measure(engine, args.steps)))


if __name__ == "__main__":
    main()
