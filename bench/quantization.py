"""Each weight storage (``--quantize none|int8|int4``) side by side, in one process, runs interleaved.

For each mode: warm load, decode tokens/s of the app's engine (128 greedy tokens, median of the runs; after the
first token, and end to end with the prefill of a ~100-token prompt, as ``generate()`` is timed), time to
first token for a 512-token prompt, perplexity over 1,024 tokens of ``bench/data/story.txt`` in one pass (the
prefill path) and over 256 tokens fed one at a time (the decode path, where the quantized kernels run). Plus the
baseline the speed target is set against: a raw ``model.generate()`` on the unquantized fp32 model.

Run: ``.venv/bin/python bench/quantization.py [--runs N]``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

STORY = Path(__file__).with_name("data") / "story.txt"
MODES = ("none", "int8", "int4")
DECODE_TOKENS = 128


def prefill_perplexity(model: Any, ids: Any) -> float:
    import torch

    with torch.inference_mode():
        return math.exp(model(input_ids=ids, labels=ids).loss.item())


def decode_perplexity(engine: Any, ids: Any, start: int = 64, count: int = 256) -> float:
    """Perplexity of tokens ``start..start+count``, each scored after feeding its predecessor alone, through the
    engine's own decode step (the lean loop where the model has one, else the model's forward)."""
    import torch

    from assistant.engine.kvcache import new_cache

    cache = new_cache(engine.model.config)
    losses = []
    with torch.inference_mode():
        scores = engine.next_scores(ids[:, :start], cache)
        for position in range(start, start + count):
            log_probabilities = torch.log_softmax(scores[0], dim=-1)
            losses.append(-log_probabilities[ids[0, position]].item())
            scores = engine.next_scores(ids[:, position : position + 1], cache)
    return math.exp(sum(losses) / len(losses))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    import torch

    from assistant.core.prompts import Prompt
    from assistant.core.settings import SamplerSettings
    from assistant.engine.generate import Engine
    from assistant.engine.models import load_model

    text = STORY.read_text(encoding="utf-8")
    engines: dict[str, Engine] = {}
    figures: dict[str, Any] = {"torch_cpu_capability": str(torch.backends.cpu.get_cpu_capability())}
    for mode in MODES:
        load_model(device="cpu", quantize=mode)  # the first load of a mode writes its cache; time the next one
        loaded = load_model(device="cpu", quantize=mode)
        engines[mode] = Engine(loaded)
        figures[f"{mode}_load_warm_s"] = round(loaded.load_seconds, 3)
        figures[f"{mode}_weights"] = loaded.weights
        figures[f"{mode}_activations"] = loaded.placement.dtype_name
        report = loaded.quantization
        if report is not None and report.mode != "none":
            figures[f"{mode}_weight_mb"] = round(report.weight_bytes_after / 2**20, 1)
            figures["none_weight_mb"] = round(report.weight_bytes_before / 2**20, 1)

    tokenizer = engines["none"].tokenizer
    ids = tokenizer(text, return_tensors="pt")["input_ids"][:, :1024]
    prompt_512 = Prompt(text=tokenizer.decode(tokenizer(text * 4, add_special_tokens=False)["input_ids"][:512]))
    decode_prompt = Prompt(text=text[:400])
    greedy = SamplerSettings(temperature=0, repetition_penalty=1.0, max_new_tokens=DECODE_TOKENS)
    first_token = SamplerSettings(temperature=0, repetition_penalty=1.0, max_new_tokens=1)
    speeds: dict[str, list[float]] = {mode: [] for mode in MODES}
    end_to_end: dict[str, list[float]] = {mode: [] for mode in MODES}
    ttfts: dict[str, list[float]] = {mode: [] for mode in MODES}
    for engine in engines.values():
        engine.generate(decode_prompt, first_token)  # warm-up
    for _ in range(args.runs):
        for mode, engine in engines.items():  # interleaved, so a noisy moment does not favour one mode
            engine.reset_cache()
            stream = engine.stream(decode_prompt, greedy)
            stream.text()
            speeds[mode].append(stream.stats.tok_s)
            end_to_end[mode].append(stream.stats.new_tokens / stream.stats.total_s)
            engine.reset_cache()
            stream = engine.stream(prompt_512, first_token)
            stream.text()
            ttfts[mode].append(stream.stats.ttft_ms)

    raw = []
    fp32 = engines["none"].model
    decode_ids = torch.tensor([engines["none"].encode(decode_prompt)])
    with torch.inference_mode():
        for _ in range(3):
            started = time.perf_counter()
            out = fp32.generate(
                decode_ids, max_new_tokens=DECODE_TOKENS, min_new_tokens=DECODE_TOKENS, do_sample=False,
                attention_mask=torch.ones_like(decode_ids), pad_token_id=tokenizer.eos_token_id,
            )  # fmt: skip
            raw.append((out.shape[1] - decode_ids.shape[1]) / (time.perf_counter() - started))
    figures["fp32_generate_tok_s"] = round(statistics.median(raw), 2)

    for mode, engine in engines.items():
        figures[f"{mode}_decode_tok_s"] = round(statistics.median(speeds[mode]), 2)
        figures[f"{mode}_end_to_end_tok_s"] = round(statistics.median(end_to_end[mode]), 2)
        figures[f"{mode}_ttft_512_ms"] = round(statistics.median(ttfts[mode]), 1)
        figures[f"{mode}_perplexity"] = round(prefill_perplexity(engine.model, ids), 3)
        figures[f"{mode}_decode_perplexity"] = round(decode_perplexity(engine, ids), 3)
    for mode in MODES:
        figures[f"{mode}_vs_fp32_generate"] = round(
            figures[f"{mode}_end_to_end_tok_s"] / figures["fp32_generate_tok_s"], 3
        )
        figures[f"{mode}_perplexity_change"] = round(figures[f"{mode}_perplexity"] / figures["none_perplexity"] - 1, 4)
        figures[f"{mode}_decode_perplexity_change"] = round(
            figures[f"{mode}_decode_perplexity"] / figures["none_decode_perplexity"] - 1, 4
        )
    json.dump(figures, sys.stdout)
    print()


if __name__ == "__main__":
    main()
