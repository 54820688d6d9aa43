"""Runs every benchmark in one go and writes ``bench/results/latest.json`` and the chart ``latest.png``.

All figures come from one run on one machine, so they compare as ratios. Each part runs in its own process (a
cold model load needs a fresh cache; the GUI needs its own QApplication).
Run: ``make bench`` (or ``.venv/bin/python bench/run.py [--quick]``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from device import VARIABLE as DEVICE_VARIABLE

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"


def run_json(script: str, *args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    print(f"bench: {script} {' '.join(args)}", file=sys.stderr, flush=True)
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *args], capture_output=True, text=True, env=env, check=False
    )
    if result.returncode != 0:
        print(result.stderr[-2000:], file=sys.stderr)
        return {f"{Path(script).stem}_error": result.returncode}
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def cold_load_seconds(device: str) -> float:
    """A first start with an empty cache: the GGUF is dequantized and converted."""
    with tempfile.TemporaryDirectory() as profile:
        env = dict(os.environ, PENWRIGHT_PROFILE=profile)
        probe = f"from assistant.engine.models import load_model; print(load_model(device={device!r}).load_seconds)"
        output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
        return round(float(output.stdout.strip().splitlines()[-1]), 2)


def machine() -> dict[str, object]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def chart(figures: dict[str, object], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def value(key: str) -> float:
        item = figures.get(key)
        return float(item) if isinstance(item, (int, float)) and not isinstance(item, bool) else 0.0

    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    machine_info: dict[str, object] = figures["machine"]  # type: ignore[assignment]
    where = f"{machine_info['cpu']} ({machine_info['torch_threads']} threads)"
    if figures.get("device") == "cuda":
        where = f"{machine_info['gpu']} (bf16, SDPA)"
    fig.suptitle(f"Penwright benchmarks — {where}")
    decode = {
        "int4": value("int4_decode_tok_s"),
        "int8": value("int8_decode_tok_s"),
        "fp32": value("none_decode_tok_s"),
        "int4,\nHF modules": value("module_forward_decode_tok_s"),
        "fp32\ngenerate()": value("fp32_generate_tok_s"),
    }
    colors = ["#3574f0", "#6a9af5", "#a9c3f7", "#b0b0b0", "#8c8c8c"]
    if figures.get("device") == "cuda":  # no quantized modes on a GPU: the engine against generate()
        decode = {
            "engine": value("decode_tok_s"),
            "raw generate()\n(with prefill)": value("raw_generate_tok_s"),
        }
        colors = ["#3574f0", "#8c8c8c"]
    if value("llama_cpp_decode_tok_s"):
        decode["llama.cpp"] = value("llama_cpp_decode_tok_s")
        colors.append("#e08a1e")
    axes[0][0].bar(list(decode), list(decode.values()), color=colors)
    axes[0][0].tick_params(axis="x", labelsize=8)
    axes[0][0].set_title("Decode speed (tokens/s, higher is better)")
    ttft = {f"{n} tokens": value(f"ttft_{n}_ms") for n in (64, 512, 2048)}
    axes[0][1].bar(list(ttft), list(ttft.values()), color="#3574f0")
    axes[0][1].set_title("Time to first token (ms, lower is better)")
    latency = {
        "ghost p50": value("gui_inline_first_ghost_p50_ms"),
        "ghost p95": value("gui_inline_first_ghost_p95_ms"),
        "GUI stall max": value("gui_stall_max_ms"),
        "window": value("time_to_window_s") * 1000,
    }
    axes[1][0].bar(list(latency), list(latency.values()), color="#2f9e6a")
    axes[1][0].set_title("Responsiveness (ms, lower is better)")
    loads = {"imports": value("imports_s"), "warm load": value("load_warm_s"), "cold load": value("load_cold_s")}
    axes[1][1].bar(list(loads), list(loads.values()), color="#9b59b6")
    axes[1][1].set_title("Start-up (s, lower is better)")
    for axis in axes.flat:
        for container in axis.containers:
            axis.bar_label(container, fmt="%.1f", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="skip the slow parts (20,000-word summary, quality)")
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="where the model runs; cuda writes gpu.json and gpu.png and skips the CPU-only parts",
    )
    args = parser.parse_args()
    os.environ[DEVICE_VARIABLE] = args.device  # read by every part through bench/device.py
    on_gpu = args.device == "cuda"
    RESULTS.mkdir(parents=True, exist_ok=True)
    figures: dict[str, object] = {"machine": machine(), "device": args.device}
    figures.update(run_json("engine_figures.py", *(["--quick"] if args.quick else [])))
    # Quantized weights and llama.cpp's CPU build are CPU figures; a GPU runs the model as is.
    quantization = {} if on_gpu else run_json("quantization.py", "--runs", "3" if args.quick else "5")
    figures["quantization"] = quantization
    if isinstance(quantization, dict):
        figures.update({key: quantization[key] for key in quantization if "decode_tok_s" in key})
        if quantization.get("fp32_generate_tok_s"):
            figures["fp32_generate_tok_s"] = quantization["fp32_generate_tok_s"]
            figures["decode_vs_fp32_generate"] = round(
                float(figures["end_to_end_tok_s"]) / float(quantization["fp32_generate_tok_s"]),  # type: ignore[arg-type]
                3,
            )
    figures["load_cold_s"] = cold_load_seconds(args.device)
    figures.update(run_json("gui_startup.py", "--runs", "3"))
    figures.update(run_json("gui_stall.py", env=dict(os.environ, QT_QPA_PLATFORM="offscreen")))
    figures.update(run_json("inline_latency.py"))
    figures.update(run_json("gui_inline.py", env=dict(os.environ, QT_QPA_PLATFORM="offscreen")))
    if not on_gpu:
        figures.update(run_json("peers.py"))
    if "llama_cpp_decode_tok_s" in figures:
        figures["vs_llama_cpp"] = round(float(figures["decode_tok_s"]) / float(figures["llama_cpp_decode_tok_s"]), 3)  # type: ignore[arg-type]
        figures["ttft_vs_llama_cpp"] = round(
            float(figures["llama_cpp_ttft_512_ms"]) / float(figures["ttft_512_ms"]),
            3,  # type: ignore[arg-type]
        )
    if not args.quick:
        figures["quality"] = run_json("eval.py")
    name = "gpu" if on_gpu else "latest"
    (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    chart(figures, RESULTS / f"{name}.png")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
