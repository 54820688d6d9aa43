"""llama.cpp (llama-cpp-python) on the same GGUF and thread count, for the ``vs_llama_cpp`` ratios, per CPU class.

Run: ``.venv/bin/python bench/peers.py [--cpu-class native|avx2]`` (``make bench-peers`` builds llama.cpp for each
class this machine can run and runs this for each). The class's build is taken from ``.venv/llama-<class>``
(``bench/build_llama.sh``), else from whatever ``import llama_cpp`` finds (``PYTHONPATH=<folder>`` works too). Prints
one JSON object: the figures plus ``llama_cpp_build`` (version, folder, the features llama.cpp was compiled with,
the CPU and torch's capability under the class). Prints ``{"llama_cpp_missing": ...}`` when no llama.cpp is
installed, and fails when the build found does not match the class (an AVX-512 build is no AVX2 figure).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import cpu_class

STORY = Path(__file__).with_name("data") / "story.txt"
DECODE_TOKENS = 128


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--cpu-class", choices=cpu_class.CLASSES, default=os.environ.get(cpu_class.VARIABLE) or "native"
    )
    parser.add_argument(
        "--llama-dir", type=Path, help="a llama-cpp-python install folder (default .venv/llama-<class>)"
    )
    args = parser.parse_args()
    reason = cpu_class.unsupported(args.cpu_class)
    if reason:
        sys.exit(f"peers.py: cannot run the {args.cpu_class} class here: {reason}")
    if cpu_class.needs_reexec(args.cpu_class):  # not the case when run as a script; kept for imports of main()
        sys.exit("peers.py: torch was imported before the CPU class was set")
    os.environ.update(cpu_class.class_env(args.cpu_class))
    build_dir = args.llama_dir or cpu_class.llama_build_dir(args.cpu_class)
    if build_dir.is_dir():
        sys.path.insert(0, str(build_dir))
    try:
        import llama_cpp
        from llama_cpp import Llama
    except ImportError:
        json.dump(
            {"llama_cpp_missing": f"no llama.cpp for the {args.cpu_class} class: run make bench-peers"}, sys.stdout
        )
        print()
        return
    system_info = llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip()
    features = cpu_class.llama_features(system_info)
    level = cpu_class.llama_level(features)
    expected = cpu_class.expected_llama_level(args.cpu_class)
    if expected and level != expected:
        sys.exit(
            f"peers.py: the llama.cpp at {Path(llama_cpp.__file__).parent} is built for {level}, not for the "
            f"{args.cpu_class} class ({expected}); run bash bench/build_llama.sh {args.cpu_class}"
        )
    import torch

    from assistant.engine.sources import bundled_model_path

    threads = torch.get_num_threads()
    build: dict[str, object] = {
        "version": llama_cpp.__version__,
        "path": str(Path(llama_cpp.__file__).parent.parent),
        "simd": level,
        "features": features,
        "system_info": system_info,
        "threads": threads,
        **cpu_class.describe(args.cpu_class),
    }
    info_file = Path(llama_cpp.__file__).parent.parent / "penwright-build.json"
    if info_file.is_file():
        build["build"] = json.loads(info_file.read_text(encoding="utf-8"))
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
        {
            "llama_cpp_decode_tok_s": round(statistics.median(speeds), 2),
            "llama_cpp_ttft_512_ms": round(min(ttfts), 1),
            "llama_cpp_decode_runs_tok_s": [round(speed, 2) for speed in speeds],
            "llama_cpp_load_average_after": (after := cpu_class.load_average()),
            "llama_cpp_busy_machine": cpu_class.busy(build["load_average"], after),  # type: ignore[arg-type]
            "llama_cpp_build": build,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
