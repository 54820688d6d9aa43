"""The native decode step: Penwright's own 4-bit x int8 kernels and layer loop in C (``_native.c``), through ctypes.

Why: on CPUs without AVX-512 torch's int4 kernel widens the weights to floats and decoded at 0.70x llama.cpp's
speed (AVX2 class of the reference Xeon). llama.cpp rounds the activations to int8 per block of 32 and multiplies
them with the 4-bit codes in integers; ``_native.c`` does that too, on Penwright's own int4 layout (never torch's
private packing), and runs the whole layer loop in one call with a thread pool of its own.

Nothing here is trusted blindly: every matrix's product is compared with its own dequantized weights when the step
is built, and the whole step with the model's forward on a probe (:meth:`FastDecoder.verify`); a failure means the
TorchScript step, with the reason in ``--selftest`` and ``--stats``. The library is optional: a build without a C
compiler, a CPU without AVX2 and FMA (arm64 among them), ``PENWRIGHT_NATIVE=0`` or ``ATEN_CPU_CAPABILITY=default``
(the CI's stand-in for a CPU without vector kernels) all mean torch's kernels.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

LIBRARY_VERSION = 2
"""The ``pw_version()`` this module speaks to; a stale build of ``_native.c`` is not used."""
MATRIX_TOLERANCE = 0.03
"""The largest relative error (norm of the difference over the reference's) a native product may show against the
matrix's own dequantized weights on a probe. int8 activations cost about 0.005-0.01; a misread layout about 1."""

_Pointer = ctypes.c_void_p
_library: ctypes.CDLL | None = None
_library_reason: str | None = None


def library() -> tuple[ctypes.CDLL | None, str]:
    """The loaded native library and "", or None and why it cannot be used on this machine (once per process)."""
    global _library, _library_reason
    if _library_reason is None:
        _library, _library_reason = _load()
        if _library is None:
            log.info("Native decode step unavailable: %s", _library_reason)
    return _library, _library_reason


def _load() -> tuple[ctypes.CDLL | None, str]:
    if os.environ.get("PENWRIGHT_NATIVE", "1").strip() in ("0", "off", "no", "false"):
        return None, "it is switched off (PENWRIGHT_NATIVE=0)"
    if os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower() == "default":
        return None, "the CPU's vector kernels are switched off (ATEN_CPU_CAPABILITY=default)"
    path = _library_path()
    if path is None:
        return None, "this installation has no native library (it was built without a C compiler)"
    try:
        loaded = ctypes.CDLL(str(path))
    except OSError as error:
        return None, f"its library could not be loaded ({error})"
    try:
        if loaded.pw_version() != LIBRARY_VERSION:
            return None, "its library is from another version of Penwright (reinstall to rebuild it)"
        if not loaded.pw_available():
            return None, "this CPU lacks the instructions it needs (x86-64 with AVX2 and FMA)"
    except AttributeError:
        return None, "its library is incomplete"
    _declare(loaded)
    return loaded, ""


def _library_path() -> Path | None:
    folder = Path(__file__).resolve().parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = folder / f"_native{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _declare(loaded: ctypes.CDLL) -> None:
    pointer, integer, number = _Pointer, ctypes.c_int, ctypes.c_float
    loaded.pw_model_new.restype = pointer
    loaded.pw_model_new.argtypes = [integer] * 6 + [number, number] + [pointer] * 6 + [integer]
    loaded.pw_model_free.restype = None
    loaded.pw_model_free.argtypes = [pointer]
    loaded.pw_step.restype = integer
    loaded.pw_step.argtypes = [pointer] * 7 + [integer, integer, pointer]
    loaded.pw_q4_product.restype = integer
    loaded.pw_q4_product.argtypes = [pointer] * 4 + [integer, integer, pointer, pointer, integer]
    loaded.pw_q8_product.restype = integer
    loaded.pw_q8_product.argtypes = [pointer, pointer, integer, integer, pointer, pointer, integer]
    loaded.pw_use_vnni.restype = integer
    loaded.pw_use_vnni.argtypes = [integer]
    loaded.pw_set_low_rank.restype = integer
    loaded.pw_set_low_rank.argtypes = [pointer, integer, integer, pointer, pointer]


def use_vnni(wanted: bool) -> bool:
    """Whether the integer products use AVX-512 VNNI (one instruction for AVX2's two, the same sums); it is chosen
    where the CPU has it. Returns the choice in force; for tests and benchmarks."""
    loaded = library()[0]
    return bool(loaded is not None and loaded.pw_use_vnni(int(wanted)))


def _address(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


class Int4Matrix:
    """One int4 weight group in the form the native kernel reads: our codes, and fp32 steps and minimums per block.

    The steps and minimums are the group's own bf16-rounded ones (``value = code * step + zero - 8 * step``), so the
    native product and :meth:`dequantized` describe the same weights.
    """

    def __init__(self, group: Any) -> None:
        scales = group.step_and_zero.float()  # [blocks, rows, 2]
        self.group = group
        self.codes: torch.Tensor = group.codes
        self.step = scales[..., 0].t().contiguous()
        self.minimum = (scales[..., 1] - 8 * scales[..., 0]).t().contiguous()
        self.bias: torch.Tensor | None = None if group.bias is None else group.bias.float().contiguous()
        self.rows = int(group.out_features)
        self.columns = int(group.in_features)

    def pointers(self) -> list[int | None]:
        return [self.codes.data_ptr(), self.step.data_ptr(), self.minimum.data_ptr(), _address(self.bias)]

    def product(self, loaded: ctypes.CDLL, vector: torch.Tensor, threads: int) -> torch.Tensor:
        """``W @ vector`` (+ bias) by the native kernel."""
        vector = vector.float().contiguous()
        out = torch.empty(self.rows)
        code = loaded.pw_q4_product(
            *self.pointers(), self.rows, self.columns, vector.data_ptr(), out.data_ptr(), threads
        )
        if code != 0:
            raise RuntimeError("the native int4 product failed")
        return out

    def check(self, loaded: ctypes.CDLL) -> str:
        """Empty when the native product matches the group's dequantized weights on a probe; else why not."""
        from assistant.engine.quantize import _checked_rows, _relative_error

        generator = torch.Generator().manual_seed(4321)
        probe = torch.randn(self.columns, generator=generator)
        rows = _checked_rows(self.rows)
        reference = self.group.dequantized(rows) @ probe
        if self.bias is not None:
            reference = reference + self.bias[rows]
        for threads in (1, 2):  # one share and split rows
            error = _relative_error(self.product(loaded, probe, threads)[rows], reference)
            if not error <= MATRIX_TOLERANCE:  # also catches NaN
                return f"its int4 product is off by {error:.0%} on a probe"
        return ""


class Int8Head:
    """The output head as int8 rows with one fp32 step each (quantize.py's int8 group), for the native kernel."""

    def __init__(self, group: Any) -> None:
        self.codes: torch.Tensor = group.qweight.contiguous()
        self.step = group.step_column.reshape(-1).float().contiguous()
        self.rows, self.columns = (int(size) for size in self.codes.shape)
        self.group = group

    def check(self, loaded: ctypes.CDLL) -> str:
        from assistant.engine.quantize import _checked_rows, _relative_error

        generator = torch.Generator().manual_seed(4322)
        probe = torch.randn(self.columns, generator=generator)
        rows = _checked_rows(self.rows)
        reference = self.group.dequantized(rows) @ probe
        for threads in (1, 2):
            out = torch.empty(self.rows)
            code = loaded.pw_q8_product(
                self.codes.data_ptr(),
                self.step.data_ptr(),
                self.rows,
                self.columns,
                probe.data_ptr(),
                out.data_ptr(),
                threads,
            )
            error = _relative_error(out[rows], reference) if code == 0 else float("nan")
            if not error <= MATRIX_TOLERANCE:
                return f"its int8 output head is off by {error:.0%} on a probe"
        return ""


class NativeLayers:
    """The native layer loop of one model: built from the fast step's parts, checked matrix by matrix."""

    def __init__(
        self,
        loaded: ctypes.CDLL,
        *,
        input_norms: Sequence[torch.Tensor],
        post_norms: Sequence[torch.Tensor],
        matrices: Sequence[Int4Matrix],
        final_norm: torch.Tensor,
        head: Int8Head | None,
        heads: int,
        kv_heads: int,
        head_dim: int,
        intermediate: int,
        eps: float,
        scaling: float,
    ) -> None:
        self._library = loaded
        layers = len(input_norms)
        self._norms = [norm.detach().float().contiguous() for norm in (*input_norms, *post_norms)]
        self._final_norm = final_norm.detach().float().contiguous()
        self.matrices = list(matrices)
        self.head = head
        self.hidden = int(self._final_norm.numel())
        self.outputs = head.rows if head is not None else self.hidden
        norm_pointers = (_Pointer * len(self._norms))(*[norm.data_ptr() for norm in self._norms])
        matrix_pointers = (_Pointer * (4 * len(self.matrices)))(
            *[address for matrix in self.matrices for address in matrix.pointers()]
        )
        rows = (ctypes.c_int * len(self.matrices))(*[matrix.rows for matrix in self.matrices])
        self._handle = loaded.pw_model_new(
            layers,
            self.hidden,
            heads,
            kv_heads,
            head_dim,
            intermediate,
            eps,
            scaling,
            norm_pointers,
            matrix_pointers,
            rows,
            self._final_norm.data_ptr(),
            None if head is None else head.codes.data_ptr(),
            None if head is None else head.step.data_ptr(),
            0 if head is None else head.rows,
        )
        if not self._handle:
            raise ValueError("the native step does not take this model's shapes")
        self._keys = (_Pointer * layers)()
        self._values = (_Pointer * layers)()
        self._capacities = (ctypes.c_long * layers)()
        self._low_rank: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self.matrices)

    def set_low_rank(self, changes: Sequence[tuple[torch.Tensor, torch.Tensor] | None]) -> None:
        """A voice's low-rank change per matrix, as quantize.py's groups hold it (``low_rank``: down [rank, in],
        up [out, rank]); None for none. The step adds ``up @ (down @ x)`` in fp32 after each product."""
        if len(changes) != len(self.matrices):
            raise ValueError("the voice does not cover the native step's matrices")
        for index, change in enumerate(changes):
            kept = None if change is None else (change[0].float().contiguous(), change[1].float().t().contiguous())
            rank = 0 if kept is None else int(kept[0].shape[0])
            code = self._library.pw_set_low_rank(
                self._handle,
                index,
                rank,
                _address(None if kept is None else kept[0]),
                _address(None if kept is None else kept[1]),
            )
            if code != 0:
                raise MemoryError("the native decode step ran out of memory")
            self._low_rank[index] = kept  # the library reads these tensors at every step

    def __del__(self) -> None:
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            self._library.pw_model_free(handle)

    def check(self) -> str:
        """Empty when every matrix (and the head) computes what its own weights say; else the first failure."""
        for index, matrix in enumerate(self.matrices):
            reason = matrix.check(self._library)
            if reason:
                return f"matrix {index} of the layers: {reason}"
        return self.head.check(self._library) if self.head is not None else ""

    def run(
        self,
        hidden: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        key_buffers: Sequence[torch.Tensor],
        value_buffers: Sequence[torch.Tensor],
        position: int,
    ) -> torch.Tensor:
        """The token's scores ([vocab], with a native head) or final-normed hidden state, for one decode step.

        ``hidden`` (the token's embedding, fp32, contiguous) is overwritten; the buffers are [1, kv_heads,
        capacity, head_dim] fp32, contiguous, with room at ``position``.
        """
        for index, (keys, values) in enumerate(zip(key_buffers, value_buffers, strict=True)):
            if keys.dtype != torch.float32 or values.dtype != torch.float32 or not keys.is_contiguous():
                raise ValueError("the KV cache is not in the layout the native step writes")
            self._keys[index] = keys.data_ptr()
            self._values[index] = values.data_ptr()
            self._capacities[index] = keys.shape[2]
        out = torch.empty(self.outputs)
        code = self._library.pw_step(
            self._handle,
            hidden.data_ptr(),
            cos.data_ptr(),
            sin.data_ptr(),
            self._keys,
            self._values,
            self._capacities,
            position,
            torch.get_num_threads(),
            out.data_ptr(),
        )
        if code != 0:
            raise MemoryError("the native decode step ran out of memory")
        return out
