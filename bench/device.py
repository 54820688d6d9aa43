"""The device the benchmarks load the model on: ``PENWRIGHT_BENCH_DEVICE`` (set by ``bench/run.py --device``).

"cpu" by default, so results from different machines compare; "cuda" runs the same figures on a GPU, in the
model's GPU dtype (bf16 where supported) with SDPA attention, and ``bench/run.py`` writes them to ``gpu.json``.
"""

from __future__ import annotations

import os

VARIABLE = "PENWRIGHT_BENCH_DEVICE"


def bench_device() -> str:
    return os.environ.get(VARIABLE, "cpu") or "cpu"


def synchronize() -> None:
    """Wait for queued GPU work, so a timer read after it covers the work."""
    if bench_device().startswith("cuda"):
        import torch

        torch.cuda.synchronize()
