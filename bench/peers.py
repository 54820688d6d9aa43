"""llama.cpp (llama-cpp-python) on the same GGUF and thread count, for the ``vs_llama_cpp`` ratios.

Run: ``.venv/bin/python bench/peers.py``; prints one JSON object, or {} when llama-cpp-python is not installed
(``make bench-peers`` installs it).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

STORY = Path(__file__).with_name("data") / "story.txt"
DECODE_TOKENS = 128


def main() -> None:
    try:
        from llama_cpp import Llama
    except ImportError:
        print("{}")
        return
    import torch

    from assistant.engine.models import bundled_model_path

    threads = torch.get_num_threads()
    llm = Llama(model_path=str(bundled_model_path()), n_threads=threads, n_ctx=4096, verbose=False, seed=0)
    text = STORY.read_text(encoding="utf-8")
    tokens = llm.tokenize((text * 4).encode("utf-8"), add_bos=False)
    prompt_512 = tokens[:512]
    ttfts = []
    for _ in range(3):
        llm.reset()
        begin = time.perf_counter()
        llm.eval(prompt_512)
        ttfts.append((time.perf_counter() - begin) * 1000)
    speeds = []
    for _ in range(3):
        llm.reset()
        llm.eval(tokens[:100])
        begin = time.perf_counter()
        for _step in range(DECODE_TOKENS):
            token = llm.sample(temp=0.0)
            llm.eval([token])
        speeds.append(DECODE_TOKENS / (time.perf_counter() - begin))
    json.dump(
        {"llama_cpp_decode_tok_s": round(statistics.median(speeds), 2), "llama_cpp_ttft_512_ms": round(min(ttfts), 1)},
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
