"""The CPU class a benchmark runs under, so figures from different CPUs (or forced capabilities) never mix.

- ``native``: whatever this machine's CPU gives torch and llama.cpp (AVX-512 on an AVX-512 Xeon, AVX2 on most
  laptops, NEON on arm64). llama.cpp is the build in ``.venv/llama-native`` (``-march=native``).
- ``avx2``: the AVX2 class on a machine that has more: torch, oneDNN and MKL are held to AVX2 through their
  environment variables (read once, when torch loads, so they are set before it is imported), and llama.cpp is the
  build in ``.venv/llama-avx2`` (compiled without AVX-512). On an AVX-512 machine this shows, in the same run,
  what an AVX2-only CPU of the same speed would get; it is not a different CPU (caches, clocks and memory stay).

``bench/build_llama.sh <class>`` builds the llama.cpp folders; ``make bench-peers`` builds both where they run.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from pathlib import Path

CLASSES = ("native", "avx2")
VARIABLE = "PENWRIGHT_BENCH_CPU_CLASS"  # set by bench/run.py for its parts
# What each forced class sets before torch loads; "native" forces nothing.
CLASS_ENV: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}
# The capability torch must report under each forced class (checked, so an ignored variable cannot pass).
CLASS_TORCH_CAPABILITY = {"avx2": "AVX2"}
# llama.cpp's system-info features from widest to narrowest x86 SIMD: the first one set names the build's level.
LLAMA_SIMD_LEVELS = ("AVX512", "AVX2", "AVX", "SSE3")


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_level() -> str | None:
    """This CPU's x86 SIMD level in llama.cpp's words, or None where it is not x86 (or unknown)."""
    flags = cpu_flags()
    if "avx512f" in flags:
        return "AVX512"
    if "avx2" in flags:
        return "AVX2"
    if "avx" in flags:
        return "AVX"
    if "sse3" in flags or "pni" in flags:
        return "SSE3"
    return None


def expected_llama_level(cpu_class: str) -> str | None:
    return "AVX2" if cpu_class == "avx2" else machine_level()


def unsupported(cpu_class: str) -> str | None:
    """Why this machine cannot run ``cpu_class``, or None when it can."""
    if cpu_class not in CLASSES:
        return f"unknown CPU class {cpu_class!r} (known: {', '.join(CLASSES)})"
    if cpu_class == "avx2" and "avx2" not in cpu_flags():
        return "this CPU has no AVX2"
    return None


def class_env(cpu_class: str) -> dict[str, str]:
    return dict(CLASS_ENV[cpu_class])


def needs_reexec(cpu_class: str) -> bool:
    """True when torch is already loaded in this process without the class's settings (they are read at load)."""
    wanted = CLASS_ENV[cpu_class]
    return "torch" in sys.modules and any(os.environ.get(key) != value for key, value in wanted.items())


def llama_build_dir(cpu_class: str) -> Path:
    """Where ``bench/build_llama.sh`` installs the class's llama.cpp: beside the venv's packages."""
    return Path(sys.prefix) / f"llama-{cpu_class}"


def results_stem(cpu_class: str) -> str:
    return "latest" if cpu_class == "native" else f"latest-{cpu_class}"


def torch_capability() -> str:
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


def describe(cpu_class: str) -> dict[str, object]:
    """The class as the results record it (imports torch: call after the class's environment is set)."""
    return {
        "cpu_class": cpu_class,
        "cpu": cpu_model(),
        "machine_simd": machine_level(),
        "torch_cpu_capability": torch_capability(),
        "forced": class_env(cpu_class),
        "load_average": load_average(),
    }


def busy(*averages: list[float] | None) -> bool:
    """True when any 1-minute load average given was above the core count plus one: beyond the benchmark's own
    threads (one per core), other work shared the CPU, and the figures taken then say more about that work than
    about the engines (llama.cpp's spinning threads suffer most)."""
    cores = os.cpu_count() or 1
    return any(average is not None and average[0] > cores + 1 for average in averages)


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages: on a shared machine, figures taken above the core count are noise."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def llama_features(system_info: str) -> list[str]:
    """The features llama.cpp's ``llama_print_system_info()`` reports as on ("AVX512 = 1 | ..." -> ["AVX512"])."""
    return re.findall(r"(\w+) = 1\b", system_info)


def llama_level(features: list[str]) -> str | None:
    return next((level for level in LLAMA_SIMD_LEVELS if level in features), None)
