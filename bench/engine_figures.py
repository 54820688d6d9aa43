"""Engine figures in one process: warm load, time to first token by prompt length, decode speed of the app's
engine against a raw ``model.generate()`` on the same model and settings, peak memory, and a 20,000-word summary.

Run: ``.venv/bin/python bench/engine_figures.py [--quick]``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from device import bench_device, synchronize

STORY = Path(__file__).with_name("data") / "story.txt"
DECODE_TOKENS = 128


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="skip the 20,000-word summary")
    args = parser.parse_args()
    figures: dict[str, Any] = {}

    started = time.perf_counter()
    import torch
    import transformers  # noqa: F401

    figures["imports_s"] = round(time.perf_counter() - started, 3)

    from assistant.core.prompts import Prompt
    from assistant.core.settings import SamplerSettings
    from assistant.engine.generate import Engine
    from assistant.engine.models import load_model

    loaded = load_model(device=bench_device())
    if not loaded.from_conversion_cache:  # a first run (or a fresh profile) converted the GGUF: time a warm load
        del loaded
        loaded = load_model(device=bench_device())
    figures["load_warm_s"] = round(loaded.load_seconds, 3)
    figures["load_from_conversion_cache"] = loaded.from_conversion_cache
    figures["weights"] = loaded.weights
    figures["activations"] = loaded.placement.dtype_name
    engine = Engine(loaded)
    figures["threads"] = torch.get_num_threads()
    figures["torch_cpu_capability"] = str(torch.backends.cpu.get_cpu_capability())  # the CPU class it ran under

    text = STORY.read_text(encoding="utf-8")
    all_ids = engine.tokenizer(text * 8, add_special_tokens=False)["input_ids"]
    greedy = SamplerSettings(temperature=0, repetition_penalty=1.0, max_new_tokens=1)
    engine.generate(Prompt(text=text[:200]), greedy)  # warm-up
    for length in (64, 512, 2048):
        prompt = Prompt(text=engine.tokenizer.decode(all_ids[:length]))
        samples = []
        for _ in range(3):
            engine.reset_cache()  # a cold prefill: no KV cache left from the previous prompt
            stream = engine.stream(prompt, greedy)
            stream.text()
            samples.append(stream.stats.ttft_ms)
        figures[f"ttft_{length}_ms"] = round(statistics.median(samples), 1)

    decode_prompt = Prompt(text=text[:400])
    settings = SamplerSettings(temperature=0, repetition_penalty=1.0, max_new_tokens=DECODE_TOKENS)
    decode_speeds = []
    engine_speeds = []
    # The same engine with every token through transformers' modules instead of the lean loop (fastpath.py).
    module_engine = Engine(loaded, fast_decode=False)
    module_speeds = []
    for _ in range(3):
        engine.reset_cache()  # the same prefill as raw generate() below, so the two compare fairly
        stream = engine.stream(decode_prompt, settings)
        stream.text()
        decode_speeds.append(stream.stats.tok_s)  # after the first token, as llama.cpp's figure
        engine_speeds.append(stream.stats.new_tokens / stream.stats.total_s)
        module_stream = module_engine.stream(decode_prompt, settings)
        module_stream.text()
        module_speeds.append(module_stream.stats.tok_s)
    module_engine.reset_cache()
    figures["fast_decode"] = engine.fast_decode
    figures["module_forward_decode_tok_s"] = round(statistics.median(module_speeds), 2)
    ids = torch.tensor([engine.encode(decode_prompt)], device=loaded.input_device)
    raw_speeds = []
    with torch.inference_mode():
        for _ in range(3):
            begin = time.perf_counter()
            out = loaded.model.generate(
                ids, max_new_tokens=DECODE_TOKENS, min_new_tokens=DECODE_TOKENS, do_sample=False,
                attention_mask=torch.ones_like(ids), pad_token_id=engine.tokenizer.eos_token_id,
            )  # fmt: skip
            synchronize()
            raw_speeds.append((out.shape[1] - ids.shape[1]) / (time.perf_counter() - begin))
    figures["decode_tok_s"] = round(statistics.median(decode_speeds), 2)
    figures["end_to_end_tok_s"] = round(statistics.median(engine_speeds), 2)
    figures["raw_generate_tok_s"] = round(statistics.median(raw_speeds), 2)
    figures["engine_vs_raw"] = round(figures["end_to_end_tok_s"] / figures["raw_generate_tok_s"], 3)

    if not args.quick:
        from assistant.core.prompts import SummaryRequest
        from assistant.engine.tasks import run_task

        paragraphs = [
            f"In chapter {index}, the villagers of Wrenmouth talked again about the harbour, the mill and the "
            "winter festival. Elsie said the work was hard but worth it, and the children ran along the road."
            for index in range(800)
        ]
        long_text = "\n\n".join(paragraphs)
        begin = time.perf_counter()
        request = SummaryRequest(long_text, use_cache=False)  # timed from scratch, not from the last run's cache
        run_task(engine, request, SamplerSettings(max_new_tokens=96, temperature=0)).text()
        figures["summary_20k_words_s"] = round(time.perf_counter() - begin, 1)
        figures["summary_words"] = len(long_text.split())

    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    figures["peak_rss_mb"] = round(peak_kb / 1024, 1)
    if torch.cuda.is_available() and bench_device().startswith("cuda"):
        figures["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    json.dump(figures, sys.stdout)
    print()


if __name__ == "__main__":
    main()
