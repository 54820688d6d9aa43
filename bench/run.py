"""Runs every benchmark in one go and writes ``bench/results/latest.json`` and the chart ``latest.png``.

All figures come from one run on one machine, so they compare as ratios. Each part runs in its own process (a
cold model load needs a fresh cache; the GUI needs its own QApplication). A part that crashes, hangs
(``PART_TIMEOUT_S``) or prints no figures stops the run with exit status 1, its name and the end of its stderr:
no figure, and no zero, is written in its place.

CPU classes (``bench/cpu_class.py``): ``--cpu-class native`` (the default) is this machine as it is, against the
llama.cpp built for it; ``--cpu-class avx2`` holds torch, oneDNN and MKL to AVX2 (environment set before torch
loads) and compares with the llama.cpp built without AVX-512, so an AVX-512 machine shows the AVX2 class in the
same run. A forced class runs the speed parts only (engine figures without the long summary, the quantization
modes, llama.cpp) and writes ``latest-<class>.json`` / ``.png``; ``bench/classes.py`` puts the classes side by side.
Run: ``make bench`` (both classes where the CPU has AVX-512) or ``.venv/bin/python bench/run.py [--quick]
[--cpu-class avx2]``.
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

import cpu_class
from device import VARIABLE as DEVICE_VARIABLE

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"


PART_TIMEOUT_S = 1800
"""Longest a part may run (the longest, the 20,000-word summary and eval.py, take minutes); a hung part fails."""
STDERR_TAIL_LINES = 25


class PartFailed(SystemExit):
    """A benchmark part that crashed, hung or printed no figures: the run stops with exit status 1 and says which
    part and why, so a broken part can never turn into zeros in the JSON or the chart."""

    def __init__(self, part: str, reason: str, stderr: str = "") -> None:
        tail = "\n".join(stderr.rstrip().splitlines()[-STDERR_TAIL_LINES:])
        message = f"bench: {part} {reason}; nothing written"
        if tail:
            message += f"\n--- the end of {part}'s stderr ---\n{tail}"
        super().__init__(message)
        self.part = part


def run_part(part: str, command: list[str], env: dict[str, str] | None = None, timeout: float = PART_TIMEOUT_S) -> str:
    """Run one part in its own process and return its stdout; raise PartFailed if it fails or hangs."""
    print(f"bench: {part}", file=sys.stderr, flush=True)
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as error:
        stderr = error.stderr.decode("utf-8", "replace") if isinstance(error.stderr, bytes) else error.stderr or ""
        raise PartFailed(part, f"did not finish in {timeout:.0f} s", stderr) from None
    if result.returncode != 0:
        raise PartFailed(part, f"failed (exit status {result.returncode})", result.stderr)
    return result.stdout


def run_json(script: str | Path, *args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    """The figures a part prints as its last JSON line (``script`` is relative to bench/, or a full path)."""
    part = " ".join([Path(script).name, *args])
    stdout = run_part(part, [sys.executable, str(BENCH / script), *args], env=env)
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise PartFailed(part, "printed no figures")
    try:
        figures = json.loads(lines[-1])
    except ValueError as error:
        raise PartFailed(part, f"printed figures that are not JSON ({error})") from None
    if not isinstance(figures, dict):
        raise PartFailed(part, "printed figures that are not a JSON object")
    return figures


def number(figures: dict[str, object], key: str) -> float:
    """A measured figure; a missing or non-numeric one stops the run rather than become a zero."""
    item = figures.get(key)
    if not isinstance(item, (int, float)) or isinstance(item, bool):
        raise SystemExit(f"bench: no figure {key!r} ({item!r}); nothing written")
    return float(item)


def check_capability(part: str, figures: dict[str, object], expected: str | None) -> None:
    """A part's torch must have run under the class's capability (a variable torch ignored would mix classes)."""
    got = figures.get("torch_cpu_capability")
    if expected is not None and got != expected:
        raise SystemExit(f"bench: {part} ran with torch capability {got}, not {expected}; nothing written")


def cold_load_seconds(device: str) -> float:
    """A first start with an empty cache: the GGUF is dequantized and converted."""
    with tempfile.TemporaryDirectory() as profile:
        env = dict(os.environ, PENWRIGHT_PROFILE=profile)
        probe = f"from assistant.engine.models import load_model; print(load_model(device={device!r}).load_seconds)"
        stdout = run_part("cold load", [sys.executable, "-c", probe], env=env)
        try:
            return round(float(stdout.strip().splitlines()[-1]), 2)
        except (IndexError, ValueError):
            raise PartFailed("cold load", f"printed no load time ({stdout.strip()[-200:]!r})") from None


def machine(cpu_class_name: str) -> dict[str, object]:
    import torch

    return {
        **cpu_class.describe(cpu_class_name),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def chart(figures: dict[str, object], path: Path) -> None:
    """Four panels; a figure the run did not measure (a forced class skips the GUI parts) is left out, not drawn
    as zero, and a panel with none is hidden."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def value(key: str, scale: float = 1.0) -> float | None:
        item = figures.get(key)
        return float(item) * scale if isinstance(item, (int, float)) and not isinstance(item, bool) else None

    def bars(axis: object, title: str, values: dict[str, float | None], colors: list[str] | str) -> None:
        kept = {label: number for label, number in values.items() if number is not None}
        if isinstance(colors, list):
            colors = [color for color, number in zip(colors, values.values(), strict=True) if number is not None]
        if not kept:
            axis.set_visible(False)  # type: ignore[attr-defined]
            return
        axis.bar(list(kept), list(kept.values()), color=colors)  # type: ignore[attr-defined]
        axis.tick_params(axis="x", labelsize=8)  # type: ignore[attr-defined]
        axis.set_title(title)  # type: ignore[attr-defined]

    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    machine_info: dict[str, object] = figures["machine"]  # type: ignore[assignment]
    where = (
        f"{machine_info['cpu']}, {machine_info.get('cpu_class', 'native')} class "
        f"(torch {machine_info.get('torch_cpu_capability')}), {machine_info['torch_threads']} threads"
    )
    if figures.get("device") == "cuda":
        where = f"{machine_info['gpu']} (bf16, SDPA)"
    fig.suptitle(f"Penwright benchmarks — {where}")
    decode: dict[str, float | None] = {
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
    build = figures.get("llama_cpp_build")
    simd = build.get("simd") if isinstance(build, dict) else None
    decode[f"llama.cpp\n({simd})" if simd else "llama.cpp"] = value("llama_cpp_decode_tok_s")
    colors.append("#e08a1e")
    bars(axes[0][0], "Decode speed (tokens/s, higher is better)", decode, colors)
    ttft = {f"{n} tokens": value(f"ttft_{n}_ms") for n in (64, 512, 2048)}
    bars(axes[0][1], "Time to first token (ms, lower is better)", ttft, "#3574f0")
    latency = {
        "ghost p50": value("gui_inline_first_ghost_p50_ms"),
        "ghost p95": value("gui_inline_first_ghost_p95_ms"),
        "GUI stall max": value("gui_stall_max_ms"),
        "window": value("time_to_window_s", 1000),
    }
    bars(axes[1][0], "Responsiveness (ms, lower is better)", latency, "#2f9e6a")
    loads = {"imports": value("imports_s"), "warm load": value("load_warm_s"), "cold load": value("load_cold_s")}
    bars(axes[1][1], "Start-up (s, lower is better)", loads, "#9b59b6")
    for axis in axes.flat:
        for container in axis.containers:
            axis.bar_label(container, fmt="%.1f", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def set_cpu_class(name: str) -> None:
    """Puts the class's settings in this process's environment (every part inherits it) before torch loads here;
    where torch is already loaded, runs this script again in a fresh process with them."""
    reason = cpu_class.unsupported(name)
    if reason:
        raise SystemExit(f"bench: cannot run the {name} class here: {reason}")
    if cpu_class.needs_reexec(name):
        env = dict(os.environ, **cpu_class.class_env(name))
        raise SystemExit(
            subprocess.run([sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]], env=env).returncode
        )
    os.environ.update(cpu_class.class_env(name))
    os.environ[cpu_class.VARIABLE] = name
    if name != "native" and not os.environ.get("PENWRIGHT_PROFILE"):
        # Weights converted and packed under a forced capability stay in a profile of their own, so the user's
        # cache never holds another class's packing (whatever the engine keys its cache by).
        os.environ["PENWRIGHT_PROFILE"] = str(Path(sys.prefix) / f"bench-profile-{name}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="skip the slow parts (20,000-word summary, quality)")
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="where the model runs; cuda writes gpu.json and gpu.png and skips the CPU-only parts",
    )
    parser.add_argument(
        "--cpu-class",
        choices=cpu_class.CLASSES,
        default="native",
        help="native: this CPU as it is (latest.json); avx2: torch and llama.cpp held to AVX2, speed parts only "
        "(latest-avx2.json)",
    )
    args = parser.parse_args()
    on_gpu = args.device == "cuda"
    if on_gpu and args.cpu_class != "native":
        parser.error("--cpu-class is for CPU runs")
    set_cpu_class(args.cpu_class)
    forced = args.cpu_class != "native"  # a forced class: the speed figures only
    expected_capability = cpu_class.CLASS_TORCH_CAPABILITY.get(args.cpu_class)
    os.environ[DEVICE_VARIABLE] = args.device  # read by every part through bench/device.py
    RESULTS.mkdir(parents=True, exist_ok=True)
    figures: dict[str, object] = {"machine": machine(args.cpu_class), "device": args.device}
    check_capability("bench/run.py", figures["machine"], expected_capability)  # type: ignore[arg-type]
    engine = run_json("engine_figures.py", *(["--quick"] if args.quick or forced else []))
    check_capability("engine_figures.py", engine, expected_capability)
    figures.update(engine)
    # Quantized weights and llama.cpp's CPU build are CPU figures; a GPU runs the model as is.
    quantization = {} if on_gpu else run_json("quantization.py", "--runs", "3" if args.quick or forced else "5")
    if not on_gpu:
        check_capability("quantization.py", quantization, expected_capability)
    figures["quantization"] = quantization
    figures.update({key: quantization[key] for key in quantization if "decode_tok_s" in key})
    if quantization.get("fp32_generate_tok_s"):
        figures["fp32_generate_tok_s"] = quantization["fp32_generate_tok_s"]
        figures["decode_vs_fp32_generate"] = round(
            number(figures, "end_to_end_tok_s") / number(quantization, "fp32_generate_tok_s"), 3
        )
    if not forced:
        figures["load_cold_s"] = cold_load_seconds(args.device)
        figures.update(run_json("gui_startup.py", "--runs", "3"))
        figures.update(run_json("gui_stall.py", env=dict(os.environ, QT_QPA_PLATFORM="offscreen")))
        figures.update(run_json("inline_latency.py"))
        gui_inline = run_json("gui_inline.py", env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
        if not number(gui_inline, "gui_inline_samples"):  # its percentiles of no samples read 0 ms
            raise PartFailed("gui_inline.py", "saw no suggestion at all")
        figures.update(gui_inline)
    if not on_gpu:
        # The llama.cpp of the same class, in the same run: .venv/llama-<class> (make bench-peers builds it).
        peers = run_json("peers.py", "--cpu-class", args.cpu_class)
        if "llama_cpp_missing" in peers:
            print(f"bench: WARNING: {peers['llama_cpp_missing']}; no vs_llama_cpp figures", file=sys.stderr)
        figures.update(peers)
    if "llama_cpp_decode_tok_s" in figures:
        figures["vs_llama_cpp"] = round(number(figures, "decode_tok_s") / number(figures, "llama_cpp_decode_tok_s"), 3)
        figures["ttft_vs_llama_cpp"] = round(
            number(figures, "llama_cpp_ttft_512_ms") / number(figures, "ttft_512_ms"), 3
        )
    if not args.quick and not forced:
        figures["quality"] = run_json("eval.py")
    figures["load_average_after"] = cpu_class.load_average()  # beside machine.load_average, taken at the start
    machine_info: dict[str, object] = figures["machine"]  # type: ignore[assignment]
    figures["busy_machine"] = cpu_class.busy(machine_info.get("load_average"), figures["load_average_after"])  # type: ignore[arg-type]
    if figures["busy_machine"]:
        print(
            "bench: WARNING: the load average was above the core count + 1: other work shared the CPU", file=sys.stderr
        )
    name = "gpu" if on_gpu else cpu_class.results_stem(args.cpu_class)
    (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    chart(figures, RESULTS / f"{name}.png")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
