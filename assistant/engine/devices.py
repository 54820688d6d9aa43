"""Choosing where and in what precision the model runs.

``auto`` picks CUDA, then Apple MPS, then the CPU. The dtype follows what was measured fastest on each: bf16 on
CUDA (fp16 on GPUs without bf16), fp16 on MPS, and fp32 on the CPU (bf16 decodes ~20% slower on the 2-core
reference machine: 22 vs 27 tokens/s for the bundled model).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from assistant.core.errors import ModelError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Placement:
    device: str
    """The device the first layer (and the inputs) live on: "cpu", "cuda", "cuda:1", "mps"."""
    dtype_name: str
    device_map: str | dict[str, Any] | None = None
    max_memory: dict[Any, Any] | None = None

    @property
    def dtype(self) -> torch.dtype:
        import torch

        return getattr(torch, self.dtype_name)


def choose_device(requested: str = "auto") -> str:
    import torch

    requested = (requested or "auto").lower()
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    base = requested.split(":")[0]
    if base == "cuda" and not torch.cuda.is_available():
        raise ModelError("No CUDA GPU is available here; use --device cpu (or auto).")
    if base == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ModelError("Apple MPS is not available here; use --device cpu (or auto).")
    if base not in ("cpu", "cuda", "mps"):
        raise ModelError(f"Unknown device '{requested}'; choose one of {', '.join(DEVICE_CHOICES)}.")
    return requested


def choose_dtype(device: str, requested: str = "auto") -> str:
    import torch

    requested = (requested or "auto").lower()
    aliases = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
    requested = aliases.get(requested, requested)
    if requested != "auto":
        if requested not in DTYPE_CHOICES:
            raise ModelError(f"Unknown dtype '{requested}'; choose one of {', '.join(DTYPE_CHOICES)}.")
        return requested
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if device == "mps":
        return "float16"
    return "float32"


def cuda_max_memory(headroom: float = 0.9) -> dict[Any, Any]:
    """Memory per GPU (and CPU RAM for offload) that accelerate may fill when a model is bigger than one GPU."""
    import torch

    limits: dict[Any, Any] = {}
    for index in range(torch.cuda.device_count()):
        free, _total = torch.cuda.mem_get_info(index)
        limits[index] = int(free * headroom)
    limits["cpu"] = int(available_ram_bytes() * headroom)
    return limits


def available_ram_bytes() -> int:
    """RAM the process can still use; /proc/meminfo where there is one, else the physical total."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def choose_placement(device: str = "auto", dtype: str = "auto") -> Placement:
    chosen_device = choose_device(device)
    chosen_dtype = choose_dtype(chosen_device, dtype)
    if chosen_device == "cuda":
        # accelerate keeps a model on GPU 0 when it fits and spreads or offloads it when it does not.
        return Placement("cuda:0", chosen_dtype, device_map="auto", max_memory=cuda_max_memory())
    return Placement(chosen_device, chosen_dtype)
