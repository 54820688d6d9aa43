"""How much a hand-written int4 x int8 kernel would gain over torch's own int4 kernel on this CPU (issue 11).

torch 2.13's ``_weight_int4pack_mm_for_cpu`` dequantizes to floats on AVX2 and runs a decode layer at about half the
speed llama.cpp's Q4_1 x Q8_1 integer dot product reaches. This probe compiles a plain 30-line AVX2 version of that
dot product (activations quantized to int8 per 32-block, ``maddubs`` on the codes, a float scale per block) with the
system C compiler and times it against torch's kernel on one decode layer's shape, interleaved, one thread.

It is a measurement for deciding whether a native kernel is worth shipping, not part of the app: the app never
compiles code. Run: ``ATEN_CPU_CAPABILITY=avx2 .venv/bin/python bench/native_int4_probe.py`` (prints JSON).
"""

from __future__ import annotations

import ctypes
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

SOURCE = r"""
#include <immintrin.h>
#include <stdint.h>
#include <math.h>
static inline float hsum(__m256 v) {
  __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  a = _mm_hadd_ps(a, a); a = _mm_hadd_ps(a, a); return _mm_cvtss_f32(a);
}
/* codes: [rows][cols/2], byte j holds code 2j (low nibble) and 2j+1 (high nibble), Penwright's own layout;
   step, low: [rows][cols/32]; value = code * step + low. */
void q4_matvec(const uint8_t* codes, const float* step, const float* low, const float* act, float* out,
               int rows, int cols, int8_t* qa, float* da, float* sa) {
  int blocks = cols / 32;
  for (int b = 0; b < blocks; b++) {
    float m = 0; for (int i = 0; i < 32; i++) { float v = fabsf(act[b * 32 + i]); if (v > m) m = v; }
    float d = m / 127.f, inv = d > 0 ? 1.f / d : 0; int s = 0;
    for (int i = 0; i < 16; i++) {
      int e = (int)lrintf(act[b * 32 + 2 * i] * inv), o = (int)lrintf(act[b * 32 + 2 * i + 1] * inv);
      qa[b * 32 + i] = (int8_t)e; qa[b * 32 + 16 + i] = (int8_t)o; s += e + o;
    }
    da[b] = d; sa[b] = d * s;
  }
  const __m256i mask = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
  for (int r = 0; r < rows; r++) {
    const uint8_t* c = codes + (size_t)r * cols / 2;
    const float* st = step + (size_t)r * blocks; const float* lo = low + (size_t)r * blocks;
    __m256 acc = _mm256_setzero_ps(); float minimum = 0;
    for (int b = 0; b < blocks; b++) {
      __m128i raw = _mm_loadu_si128((const __m128i*)(c + b * 16));
      __m256i both = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), mask);
      __m256i a = _mm256_loadu_si256((const __m256i*)(qa + b * 32));
      __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(both, a), ones);
      acc = _mm256_fmadd_ps(_mm256_set1_ps(st[b] * da[b]), _mm256_cvtepi32_ps(p), acc);
      minimum += lo[b] * sa[b];
    }
    out[r] = hsum(acc) + minimum;
  }
}
"""

SHAPES = [(960, 576, "q/k/v fused"), (3072, 576, "gate/up fused"), (576, 1536, "down")]


def build(folder: Path) -> ctypes.CDLL | None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or platform.machine() not in ("x86_64", "AMD64"):
        return None
    source = folder / "q4.c"
    source.write_text(SOURCE)
    library = folder / "libq4.so"
    subprocess.run(
        [compiler, "-O3", "-mavx2", "-mfma", "-shared", "-fPIC", str(source), "-o", str(library)], check=True
    )
    return ctypes.CDLL(str(library))


def timed(function: Any, calls: int = 300) -> float:
    for _ in range(20):
        function()
    started = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - started) / calls * 1e6


def measure(library: ctypes.CDLL, rows: int, columns: int) -> dict[str, float]:
    generator = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 16, (rows, columns), dtype=torch.uint8, generator=generator)
    own = (codes[:, 0::2] | (codes[:, 1::2] << 4)).contiguous()
    step = torch.rand(rows, columns // 32, generator=generator) * 0.02
    low = -torch.rand(rows, columns // 32, generator=generator) * 0.1
    activations = torch.randn(columns, generator=generator)
    weights = (codes.float().view(rows, -1, 32) * step[..., None] + low[..., None]).view(rows, columns)
    reference = weights @ activations
    out = torch.empty(rows)
    quantized, block_steps, block_sums = (
        torch.empty(columns, dtype=torch.int8),
        torch.empty(columns // 32),
        torch.empty(columns // 32),
    )

    def pointer(tensor: torch.Tensor) -> ctypes.c_void_p:
        return ctypes.c_void_p(tensor.data_ptr())

    def native() -> None:
        library.q4_matvec(
            pointer(own),
            pointer(step),
            pointer(low),
            pointer(activations),
            pointer(out),
            rows,
            columns,
            pointer(quantized),
            pointer(block_steps),
            pointer(block_sums),
        )

    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32), 2)
    step_and_zero = torch.stack([step, low + 8 * step], -1).transpose(0, 1).contiguous().to(torch.bfloat16)
    row = activations.view(1, -1).to(torch.bfloat16)

    def torch_kernel() -> torch.Tensor:
        return torch.ops.aten._weight_int4pack_mm_for_cpu(row, packed, 32, step_and_zero)

    native()
    figures: dict[str, list[float]] = {"native_us": [], "torch_us": []}
    for _ in range(3):  # interleaved, so load from elsewhere hits both alike
        figures["native_us"].append(timed(native))
        figures["torch_us"].append(timed(torch_kernel))
    native_us, torch_us = min(figures["native_us"]), min(figures["torch_us"])
    return {
        "native_us": round(native_us, 1),
        "torch_us": round(torch_us, 1),
        "speedup": round(torch_us / native_us, 2),
        "native_error": round(float((out - reference).norm() / reference.norm()), 4),
        "torch_error": round(float((torch_kernel().float().view(-1) - reference).norm() / reference.norm()), 4),
    }


def main() -> int:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        library = build(Path(folder))
        if library is None:
            print(json.dumps({"skipped": "needs an x86-64 CPU and a C compiler"}))
            return 0
        results = {
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "load_average": [round(value, 2) for value in __import__("os").getloadavg()],
            "shapes": {f"{rows}x{columns} ({name})": measure(library, rows, columns) for rows, columns, name in SHAPES},
        }
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
