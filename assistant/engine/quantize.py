"""Weight-only quantization of a loaded model's linear layers, for faster decoding on the CPU.

Decoding one token reads every weight once, and on a CPU that read is what takes the time (``aten::mm`` was ~74% of
a decode step of the bundled model in fp32). Storing the weights in 8 or 4 bits reads 4 or 8 times fewer bytes.
The matrix products use torch's own weight-only kernels, which take bf16 activations:

- ``int8``: one scale per output row, ``torch.ops.aten._weight_int8pack_mm``.
- ``int4``: groups of 32 weights with a step and a minimum each, ``torch.ops.aten._weight_int4pack_mm_for_cpu``.
  That is the layout of GGUF's Q4_0/Q4_1 (and close to Q4_K), so a 4-bit GGUF model gets its own weights back.

How the int4 kernel packs its weights is private to torch and differs by the CPU capability it dispatches to
(AVX-512 interleaves 64-row blocks, AVX2 and the plain C++ kernel do otherwise). So the codes are kept in a layout of
our own (two codes a byte, row-major): the long-prompt path, the cache and any slicing read only that, and the
kernel's packing is made from it on each load by the kernel's own conversion (1-2 ms a layer).

Every group checks itself when it loads (:meth:`_QuantizedWeights.verify`): each path's product on a probe against
the group's own dequantized weights. A group that disagrees falls back, int4 to int8 to full precision, and the report
says why: a kernel that computes something else on some CPU costs speed, never a wrong answer.

The kernels are built for a few rows at a time. A long prompt (prefill) multiplies hundreds of rows, where
dequantizing the weights and running an fp32 GEMM is about 2x faster, so a layer switches to that above
``PREFILL_ROWS``. Sibling projections that read the same input (q/k/v, gate/up) share one fused matrix: one kernel
call instead of three. Embeddings stay as they are (a lookup reads one row, not the table); the output head gets
int8 even in int4 mode, because 4 bits there cost the most quality (bundled model: perplexity +7% with an int4
head, 0% with int8) for little speed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as functional

from assistant.core.errors import ModelError
from assistant.core.settings import QUANTIZE_CHOICES

__all__ = ["QUANTIZE_CHOICES", "QuantizationReport", "QuantizedLinear", "quantize_model", "resolve_mode"]

log = logging.getLogger(__name__)

CACHE_FORMAT = 3
"""The layout version of what :func:`quantize_model` stores; bumped when it changes, so older files are not misread.
3: int4 codes in our own row-major layout (2 held torch's AVX-512 packing)."""
INT4_GROUP_SIZE = 32
INT4_BLOCK_ROWS = 64
"""The int4 kernel packs rows in blocks (64 for AVX-512, fewer elsewhere); other row counts fall back to int8."""
SELF_CHECK_TOLERANCE = 0.03
"""The largest relative error (norm of the difference over norm of the reference) a product may show against the
group's own dequantized weights. Rounding the activations and the result to bf16 costs about 0.004; int8
activations about 0.01; a kernel that reads its weights in another layout is off by about 1.4."""
WEIGHT_ERROR_BOUND = {"int8": 0.05, "int4": 0.35}
"""How far freshly quantized weights may be from the model's own (relative norm of the difference). Typical: int8
0.005, int4 0.08 (0 for a 4-bit GGUF); a code or nibble order mix-up gives 0.5 and more."""
CHECKED_ROWS = 384
"""At most this many output rows of a group are compared in its load-time check."""
FALLBACK = {"int4": "int8", "int8": "none"}
"""What a group whose products fail the self-check tries next; "none" keeps the model's own layers."""
PREFILL_ROWS = {"int8": 32, "int4": 112}
"""Above this many rows (tokens) a layer dequantizes and runs an fp32 GEMM. Measured crossovers on the 2-core
reference machine, for a 1536x576 layer: int8 about 32 rows (dequantizing takes 0.25 ms), int4 about 110 rows
(unpacking takes 0.84 ms; the kernel takes 0.95 ms for 64 rows and 1.9 ms for 128, the fp32 GEMM 0.64 and 0.91)."""
MAX_SHARING_MISSES = 2
"""After this many products that some siblings never used, a group stops sharing (its model feeds them different
tensors) and each member multiplies by its own rows."""
FUSED_SIBLINGS: tuple[tuple[str, ...], ...] = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"), ("w1", "w3"))
AT_MOST_FOUR_BIT_GGUF_TYPES = frozenset({2, 3, *range(10, 16), *range(19, 32)})
"""GGUF file types (``general.file_type``) whose weights are mostly 4 bits or fewer: Q4_0, Q4_1, Q2_K-Q4_K_M and
the IQ1-IQ4 kinds. int4 gives such a model back (nearly) the weights it came with."""


@dataclass(frozen=True)
class Fallback:
    """One weight group whose products failed the self-check in one mode."""

    group: str
    """The first layer's name, e.g. "model.layers.3.self_attn.q_proj"."""
    failed: str
    runs_as: str
    """The next mode tried: "int8", or "none" (full precision)."""
    reason: str


@dataclass
class QuantizationReport:
    mode: str
    """What the linear layers run with: "none", "int8" or "int4"."""
    requested: str
    layers: int = 0
    fused_groups: int = 0
    skipped: int = 0
    seconds: float = 0.0
    weight_bytes_before: int = 0
    weight_bytes_after: int = 0
    from_cache: bool = False
    """The quantized weights were read from the cache instead of computed."""
    note: str = ""
    """Why the mode differs from an explicit request, or why some layers fell back, in a sentence; else empty."""
    fallbacks: list[Fallback] = field(default_factory=list)
    """Every self-check that failed, in order (a group can fail int4, then int8)."""
    capability: str = ""
    """The CPU kernels torch dispatched to when the weights were checked ("AVX512", "AVX2", "DEFAULT", ...)."""

    def describe(self) -> str:
        """A few words for people: "int4 weights (91 MB)" or "full-precision weights"."""
        if self.mode == "none":
            return "full-precision weights"
        groups = len({fallback.group for fallback in self.fallbacks})
        checked = f", {groups} group{'s' if groups != 1 else ''} fell back" if groups else ""
        return f"{self.mode} weights ({self.weight_bytes_after / 2**20:,.0f} MB{checked})"


def resolve_mode(requested: str, device: str, has_device_map: bool, four_bit_source: bool = False) -> tuple[str, str]:
    """The mode to use and, when it is not what was asked for, why.

    ``auto`` means int4 for a model that was 4-bit already (a Q4 GGUF: the same weights, and the fastest), int8
    otherwise (1.5x the fp32 decode speed, perplexity +1.0% on the bundled model), and nothing on a GPU.
    """
    requested = check_choice(requested)
    if requested == "none":
        return "none", ""
    if device != "cpu" or has_device_map:
        note = (
            "" if requested == "auto" else f"{requested} weights speed up the CPU only; the GPU runs the model as is."
        )
        return "none", note
    if not kernels_available():
        note = "" if requested == "auto" else "This torch build lacks the CPU kernels for quantized weights."
        return "none", note
    if requested == "auto":
        return fastest_mode("int4" if four_bit_source else "int8")
    return requested, ""


def fastest_mode(preferred: str) -> tuple[str, str]:
    """``preferred`` ("int4" or "int8") when its kernel beats full precision on this CPU, else the next that does.

    Quantized weights only pay through kernels made for the CPU: torch's generic int4 kernel (ATen's "DEFAULT"
    capability, no SIMD) is 4x slower than an fp32 GEMV, while on AVX2 and AVX-512 int4 is 5-9x faster.
    """
    timings = kernel_timings()
    quantized = ["int4", "int8"]
    for mode in quantized[quantized.index(preferred) :]:
        if timings.get(mode, float("inf")) <= SLOW_KERNEL_RATIO * timings["none"]:
            return mode, ""
    return "none", (
        f"The quantized kernels are slower than full precision on this CPU ({cpu_capability()}), so the weights "
        "run as loaded."
    )


_KERNEL_TIMINGS: dict[str, float] = {}
SLOW_KERNEL_RATIO = 1.5
"""A quantized mode is passed over when its one-token product takes more than this many times full precision's: a
clear margin (the generic int4 kernel is 4x slower; on AVX2/AVX-512 int4 is 5-9x faster), so noise never decides."""


def kernel_timings() -> dict[str, float]:
    """Milliseconds for one token through a 1536x576 layer in each mode here (the fastest of a few tries; measured
    once per process, about 20 ms)."""
    if not _KERNEL_TIMINGS:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one thread: a busy second core would otherwise decide the comparison
        try:
            _time_kernels()
        finally:
            torch.set_num_threads(threads)
    return dict(_KERNEL_TIMINGS)


def _time_kernels() -> None:
    """Fill _KERNEL_TIMINGS: one token through the same layer in each mode, the fastest of five tries."""
    generator = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(576, 1536, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.randn((1536, 576), generator=generator) * 0.05)
        row = torch.randn((1, 576), generator=generator)
        products: dict[str, Any] = {"none": linear}
        for mode in ("int8", "int4"):
            try:
                products[mode] = _QuantizedWeights([linear], mode).product
            except (RuntimeError, ValueError) as error:
                log.info("No %s kernel here: %s", mode, error)
        for mode, product in products.items():
            product(row)  # the first call sets up the kernel
            tries = []
            for _ in range(5):
                started = time.perf_counter()
                product(row)
                tries.append(time.perf_counter() - started)
            _KERNEL_TIMINGS[mode] = min(tries) * 1000


def check_choice(requested: str) -> str:
    """The choice in lower case; a ModelError that lists the valid ones for anything else."""
    requested = (requested or "auto").lower()
    if requested not in QUANTIZE_CHOICES:
        raise ModelError(f"Unknown quantization '{requested}'; choose one of {', '.join(QUANTIZE_CHOICES)}.")
    return requested


def kernels_available() -> bool:
    aten = torch.ops.aten
    return all(
        hasattr(aten, name)
        for name in ("_weight_int8pack_mm", "_weight_int4pack_mm_for_cpu", "_convert_weight_to_int4pack_for_cpu")
    )


def int8_matmul_works() -> bool:
    """Whether ``torch._int_mm`` (int8 x int8 -> int32) runs here and is exact; it is the output head's fast path.

    Exact matters: without VNNI (AVX2, AVX-512 before Cascade Lake) oneDNN multiplies through 16-bit pair sums that
    saturate, so 127 x 127 x 64 gave 8,160 instead of 1,032,256 and real scores were off by up to 26%, while random
    probes looked fine. So the worst case is probed on purpose, beside random codes; the head then takes the
    weight-only int8 kernel instead.
    """
    global _INT8_MATMUL_WORKS
    if _INT8_MATMUL_WORKS is None:
        try:
            worst = torch._int_mm(
                torch.full((1, 64), 127, dtype=torch.int8), torch.full((64, 16), 127, dtype=torch.int8)
            )
            generator = torch.Generator().manual_seed(0)
            left = torch.randint(-127, 128, (3, 576), dtype=torch.int8, generator=generator)
            right = torch.randint(-127, 128, (576, 64), dtype=torch.int8, generator=generator)
            exact = (left.double() @ right.double()).to(torch.int64)
            _INT8_MATMUL_WORKS = bool((worst == 127 * 127 * 64).all()) and torch.equal(
                torch._int_mm(left, right).to(torch.int64), exact
            )
        except (RuntimeError, AttributeError, NotImplementedError):
            _INT8_MATMUL_WORKS = False
    return _INT8_MATMUL_WORKS


_INT8_MATMUL_WORKS: bool | None = None


def bf16_is_fast() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX) and torch dispatches to the kernels that use
    it; elsewhere bf16 is emulated and slow, and with AVX-512 kernels switched off (``ATEN_CPU_CAPABILITY=avx2``)
    some bf16 kernels (attention) refuse to run at all."""
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
    return native and cpu_capability().startswith("AVX512")


def cache_file(fingerprint: str, mode: str, folder: Path) -> Path:
    """Where the quantized weights of one model (named by a fingerprint of its weight files) are kept."""
    import hashlib

    key = hashlib.sha256(f"{fingerprint}|{mode}|{machine_key()}".encode()).hexdigest()[:24]
    return folder / f"{mode}-{key}.safetensors"


def cpu_capability() -> str:
    """The kernels torch dispatches to here: "AVX512", "AVX2", "DEFAULT" (or what ATEN_CPU_CAPABILITY forces)."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return "unknown"


def machine_key() -> str:
    """What a cached file depends on besides the model: torch, the CPU kernels and our own layout version."""
    return f"torch {torch.__version__}|{platform.machine()} {cpu_capability()}|layout {CACHE_FORMAT}"


def quantize_model(model: Any, mode: str, cache: Path | None = None) -> QuantizationReport:
    """Replace the model's linear layers with quantized ones, in place. ``mode`` is "int8" or "int4".

    With ``cache``, weights quantized on an earlier load are read from that file (a few hundredths of a second
    instead of ~0.6 s for the bundled model); the file is written when it is missing or does not match. Every group
    checks its products on this CPU before it is used; one that fails falls back (int4 to int8 to full precision).
    """
    report = QuantizationReport(mode=mode, requested=mode, capability=cpu_capability())
    if mode == "none":
        return report
    started = time.perf_counter()
    stored = _read_cache(cache)
    to_store: dict[str, torch.Tensor] = {}
    all_stored = True
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    with torch.no_grad():
        for path, parent in list(model.named_modules()):
            for names, group_mode in _plans(parent, mode, head, report):
                linears = [child for name in names if isinstance(child := getattr(parent, name), torch.nn.Linear)]
                key = f"{path}.{names[0]}" if path else names[0]
                group = _checked_group(linears, group_mode, _stored_for(stored, key), linears[0] is head, key, report)
                if group is None:
                    continue
                all_stored = all_stored and group.from_cache
                to_store.update({f"{key}.{name}": tensor for name, tensor in group.tensors().items()})
                for index, name in enumerate(names):
                    setattr(parent, name, QuantizedLinear(group, index))
                report.layers += len(names)
                report.fused_groups += int(len(names) > 1)
                report.weight_bytes_before += sum(_bytes(linear.weight) for linear in linears)
                report.weight_bytes_after += group.nbytes
    report.from_cache = all_stored and report.layers > 0
    if report.fallbacks:
        report.note = _fallback_note(report)
        log.warning("%s", report.note)
    if cache is not None and not report.from_cache and to_store:
        _write_cache(cache, to_store, mode)
    report.seconds = time.perf_counter() - started
    return report


def _plans(parent: Any, mode: str, head: Any, report: QuantizationReport) -> list[tuple[list[str], str]]:
    """Which children of ``parent`` to quantize, as groups of siblings that share one product, and in which mode."""
    children = dict(parent.named_children())
    plans: list[tuple[list[str], str]] = []
    for sibling_names in FUSED_SIBLINGS:
        siblings = [child for name in sibling_names if isinstance(child := children.get(name), torch.nn.Linear)]
        if len(siblings) != len(sibling_names) or len({sibling.in_features for sibling in siblings}) != 1:
            continue
        group_mode = _mode_for(siblings, mode)
        if group_mode is not None:
            plans.append((list(sibling_names), group_mode))
    planned = {name for names, _ in plans for name in names}
    for name, child in children.items():
        if name in planned or not isinstance(child, torch.nn.Linear):
            continue
        layer_mode = _mode_for([child], "int8" if child is head else mode)
        if layer_mode is None:
            report.skipped += 1
        else:
            plans.append(([name], layer_mode))
    return plans


def _checked_group(
    linears: list[torch.nn.Linear],
    mode: str,
    stored: dict[str, torch.Tensor],
    is_head: bool,
    key: str,
    report: QuantizationReport,
) -> _QuantizedWeights | None:
    """The group in the first mode whose products pass the self-check here (int4, then int8); None: keep the layers.

    A failing group is logged with its reason and counted in ``report.fallbacks``.
    """
    current: str | None = mode
    while current is not None and current != "none":
        group = _QuantizedWeights(linears, current, stored if current == mode else None)
        if is_head:
            group.int8_activations = current == "int8" and int8_matmul_works()
            group.float_output = True  # the scores stay fp32, as transformers' loss and our sampler want
        reason = group.verify(() if group.from_cache else linears)
        if not reason:
            return group
        next_mode = FALLBACK[current]
        log.warning("%s: %s weights failed their self-check (%s); trying %s", key, current, reason, next_mode)
        report.fallbacks.append(Fallback(key, current, next_mode, reason))
        current = next_mode
    return None


def _fallback_note(report: QuantizationReport) -> str:
    """One sentence for the status bar, --selftest and --stats: how many groups fell back, to what, and why."""
    final = {fallback.group: fallback.runs_as for fallback in report.fallbacks}  # the last word for each group
    counts = {mode: sum(1 for value in final.values() if value == mode) for mode in sorted(set(final.values()))}
    parts = ", ".join(f"{count} to {'full precision' if mode == 'none' else mode}" for mode, count in counts.items())
    return (
        f"Some {report.mode} weights gave wrong products on this CPU ({report.capability}), so {len(final)} weight "
        f"group{'s' if len(final) != 1 else ''} fell back ({parts}): {report.fallbacks[0].reason}."
    )


def _read_cache(cache: Path | None) -> dict[str, torch.Tensor]:
    if cache is None or not cache.is_file():
        return {}
    try:
        from safetensors.torch import load_file

        # Copies: tensors read from the file sit at whatever offset the file gives them, and the int8 kernel
        # crashes (SIGSEGV) on weights that are not 16-byte aligned when it gets 4 to 24 rows.
        return {name: tensor.clone() for name, tensor in load_file(str(cache)).items()}
    except Exception as error:  # a damaged cache file only costs the time to quantize again
        log.warning("Ignoring the damaged quantized-weights cache %s: %s", cache, error)
        return {}


def _write_cache(cache: Path, tensors: dict[str, torch.Tensor], mode: str) -> None:
    """Write atomically (a temporary file, then a rename); failing to write only costs speed next time."""
    from safetensors.torch import save_file

    temporary = cache.with_name(f"{cache.name}.partial-{os.getpid()}")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_file({key: tensor.contiguous() for key, tensor in tensors.items()}, str(temporary), {"mode": mode})
        os.replace(temporary, cache)
    except Exception as error:  # OSError, or safetensors' own SafetensorError for I/O failures
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        log.warning("Could not cache the quantized weights in %s: %s", cache, error)


def _stored_for(stored: dict[str, torch.Tensor], key: str) -> dict[str, torch.Tensor]:
    prefix = key + "."
    return {name[len(prefix) :]: tensor for name, tensor in stored.items() if name.startswith(prefix)}


def _bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _mode_for(linears: Sequence[torch.nn.Linear], mode: str) -> str | None:
    """The mode these layers can take: int4 needs whole groups and row blocks, else int8; None leaves them as is."""
    for linear in linears:
        weight = linear.weight
        if weight.device.type != "cpu" or weight.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            return None
        if linear.in_features < 16 or linear.out_features < 8:
            return None
    if mode == "int4":
        rows = sum(linear.out_features for linear in linears)
        if linears[0].in_features % INT4_GROUP_SIZE != 0 or rows % INT4_BLOCK_ROWS != 0:
            return "int8"
    return mode


class _QuantizedWeights:
    """The quantized weights of one or more linear layers that read the same input, stacked by output rows.

    Members call :meth:`output` with the same input tensor, in any order; the first call runs one product for all of
    them and the others take their columns of it. When siblings keep reading different tensors, sharing stops for
    good and each member multiplies by its own rows.
    """

    def __init__(
        self, linears: Sequence[torch.nn.Linear], mode: str, stored: dict[str, torch.Tensor] | None = None
    ) -> None:
        self.mode = mode
        self.sizes = [linear.out_features for linear in linears]
        starts = [sum(self.sizes[:index]) for index in range(len(self.sizes))]
        self.rows = [slice(start, start + size) for start, size in zip(starts, self.sizes, strict=True)]
        self.in_features = linears[0].in_features
        self.out_features = sum(self.sizes)
        biases = [linear.bias for linear in linears]
        self.bias: torch.Tensor | None = None
        if any(bias is not None for bias in biases):
            self.bias = torch.cat(
                [
                    bias.detach().float() if bias is not None else torch.zeros(size)
                    for bias, size in zip(biases, self.sizes, strict=True)
                ]
            )
        self.prefill_rows = PREFILL_ROWS[mode]
        self._step_row: torch.Tensor | None = None
        self._member_packed: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        # Stacking the weights as fp32 is only needed to quantize them; a warm load from the cache skips it.
        self.from_cache = self._take_stored(stored or {}, self.out_features, self.in_features)
        if not self.from_cache:
            weight = torch.cat([linear.weight.detach() for linear in linears]).float()
            if mode == "int8":
                self._set_int8(weight)
            else:
                self._set_int4(weight)
        if mode == "int4":
            # The kernel's own packing of our codes, made here for this CPU; it is never read by hand or stored.
            self.packed = _kernel_packing(self.codes)
            self.nbytes += _bytes(self.packed)
        self.shared = len(linears) > 1
        self._input: torch.Tensor | None = None
        self._output: torch.Tensor | None = None
        self.float_output = False
        self.int8_activations = False
        """Multiply as int8 x int8 with activations quantized per row: the output head, where it is 2.5x faster
        than the weight-only kernel (0.54 vs 1.36 ms for the bundled model's head) for +0.1% perplexity."""
        self._served: set[int] = set()
        self._misses = 0
        self.exact_activations = False
        """Multiply fp32 activations instead of bf16 ones (the same weights): the reference the native decode step is
        checked against (fastpath.py), since bf16 rounding of the activations is most of the forward's own error."""
        self._voice: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.low_rank: tuple[torch.Tensor, torch.Tensor] | None = None
        """A voice's change of this group's outputs (assistant.engine.voices): ``up @ (down @ x)`` with down
        [rank, in_features] and up [out_features, rank], fp32, members side by side (zeros where a member has none);
        added at full precision after the quantized product, since int4 rounding would lose a merged voice."""

    def set_low_rank(self, member: int, down: torch.Tensor | None, up: torch.Tensor | None) -> None:
        """Give a member a voice's low-rank change (None, None: take it away)."""
        if down is None or up is None:
            self._voice.pop(member, None)
        else:
            self._voice[member] = (down.float().contiguous(), up.float().contiguous())
        if not self._voice:
            self.low_rank = None
            return
        members = sorted(self._voice)
        rank = sum(self._voice[index][0].shape[0] for index in members)
        stacked_up = torch.zeros((self.out_features, rank))
        downs, column = [], 0
        for index in members:
            down, up = self._voice[index]
            downs.append(down)
            stacked_up[self.rows[index], column : column + down.shape[0]] = up
            column += down.shape[0]
        self.low_rank = (torch.cat(downs).contiguous(), stacked_up)

    # --- storing ---------------------------------------------------------------------------------------------

    def _expected(self, rows: int, columns: int) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        if self.mode == "int8":
            return {
                "qweight": ((rows, columns), torch.int8),
                "scale": ((rows,), torch.bfloat16),
                "step_column": ((rows, 1), torch.float32),
            }
        groups = columns // INT4_GROUP_SIZE
        return {
            "codes": ((rows, columns // 2), torch.uint8),
            "step_and_zero": ((groups, rows, 2), torch.bfloat16),
        }

    def _take_stored(self, stored: dict[str, torch.Tensor], rows: int, columns: int) -> bool:
        """Use cached tensors when they are all there with the right shapes and types."""
        expected = self._expected(rows, columns)
        for name, (size, dtype) in expected.items():
            tensor = stored.get(name)
            if tensor is None or tuple(tensor.shape) != size or tensor.dtype != dtype:
                return False
        for name in expected:
            setattr(self, name, stored[name])
        self.nbytes = sum(_bytes(stored[name]) for name in expected)
        return True

    def tensors(self) -> dict[str, torch.Tensor]:
        """What the cache keeps for this group."""
        return {name: getattr(self, name) for name in self._expected(self.out_features, self.in_features)}

    def _set_int8(self, weight: torch.Tensor) -> None:
        step = weight.abs().amax(dim=1).clamp(min=1e-10) / 127.0
        self.qweight = torch.round(weight / step[:, None]).clamp_(-127, 127).to(torch.int8)
        self.scale = step.to(torch.bfloat16)
        self.step_column = step[:, None].contiguous()
        self.nbytes = _bytes(self.qweight) + _bytes(self.scale) + _bytes(self.step_column)

    def _set_int4(self, weight: torch.Tensor) -> None:
        rows, columns = weight.shape
        groups = weight.reshape(rows, columns // INT4_GROUP_SIZE, INT4_GROUP_SIZE)
        low = groups.amin(dim=-1, keepdim=True)
        high = groups.amax(dim=-1, keepdim=True)
        step = ((high - low) / 15.0).clamp(min=1e-10)
        codes = torch.round((groups - low) / step).clamp_(0, 15).reshape(rows, columns).to(torch.uint8)
        # The kernel computes (code - 8) * step + zero, so "zero" is the group's value at code 8.
        zero = low + 8 * step
        pairs = torch.stack([step.squeeze(-1), zero.squeeze(-1)], dim=-1)  # [rows, groups, 2]
        self.step_and_zero = pairs.transpose(0, 1).contiguous().to(torch.bfloat16)
        self.codes = _pack_nibbles(codes)
        self.nbytes = _bytes(self.codes) + _bytes(self.step_and_zero)

    @property
    def step_row(self) -> torch.Tensor:
        if self._step_row is None:
            self._step_row = self.step_column.reshape(1, -1)
        return self._step_row

    def dequantized(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """All rows (or these rows) as fp32, for long prompts (where an fp32 GEMM beats the few-row kernels)."""
        if self.mode == "int8":
            if rows is None:
                return self.qweight.float().mul_(self.step_column)
            return self.qweight[rows].float().mul_(self.step_column[rows])
        codes = self.codes if rows is None else self.codes[rows]
        count = codes.shape[0]
        grouped = _unpack_nibbles(codes).float().view(count, -1, INT4_GROUP_SIZE)
        # The same bf16-rounded numbers the kernel uses: value = code * step + (zero - 8 * step).
        scales = self.step_and_zero if rows is None else self.step_and_zero[:, rows]
        step_and_zero = scales.float().transpose(0, 1)  # [rows, groups, 2]
        step = step_and_zero[..., 0:1]
        low = step_and_zero[..., 1:2] - 8 * step
        return grouped.mul_(step).add_(low).view(count, self.in_features)

    # --- checking ----------------------------------------------------------------------------------------------

    @torch.no_grad()
    def verify(self, originals: Sequence[torch.nn.Linear] = ()) -> str:
        """Empty when every path of this group computes what its own weights say on this CPU; else why not.

        A probe goes through the few-row kernel (one row and a few) and the long-prompt path, each compared with the
        probe times the group's dequantized weights. Given the layers it was made from (not on a load from
        the cache), the dequantized weights are also compared with theirs, which catches codes that were stored wrong.
        Large groups are compared on every k-th output row (at most CHECKED_ROWS of them): a kernel that reads
        another layout scrambles rows everywhere, and a full check of every group cost seconds per load.
        """
        generator = torch.Generator().manual_seed(1234)
        probe = torch.randn((4, self.in_features), generator=generator)
        rows = _checked_rows(self.out_features)
        try:
            weights = self.dequantized(rows)
            bias = None if self.bias is None else self.bias[rows]
            reference = functional.linear(probe, weights, bias)
            for path, count in (("one-row kernel", 1), ("few-row kernel", 4), ("long-prompt path", 4)):
                if path == "long-prompt path":
                    result = self._many_rows(probe, weights)
                else:
                    result = self._few_rows(probe[:count])[:, rows]
                result = result.float() if bias is None else result.float() + bias
                error = _relative_error(result, reference[:count])
                if not error <= SELF_CHECK_TOLERANCE:  # also catches NaN
                    return f"the {path} is off by {_percent(error)} on a probe"
        except (RuntimeError, ValueError, MemoryError, IndexError) as failure:
            return f"the kernel failed: {failure}"
        if originals and self.mode in ("int4", "int8"):
            original = torch.cat([linear.weight.detach() for linear in originals])[rows].float()
            drift = _relative_error(weights, original)
            if not drift <= WEIGHT_ERROR_BOUND[self.mode]:
                return f"the stored weights are {_percent(drift)} off the model's"
        return ""

    # --- computing -------------------------------------------------------------------------------------------

    def product(self, flat: torch.Tensor) -> torch.Tensor:
        """``flat @ W.T`` for all rows of the group, in the input's dtype."""
        result = self._many_rows(flat) if flat.shape[0] > self.prefill_rows else self._few_rows(flat)
        return self._finish(result, flat, slice(None))

    def _many_rows(self, flat: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """A long prompt: dequantize (unless ``weights`` already are) and run an fp32 GEMM."""
        return functional.linear(flat.float(), self.dequantized() if weights is None else weights)

    def _few_rows(self, flat: torch.Tensor) -> torch.Tensor:
        """Decoding and short prompts: torch's quantized kernels, without the bias."""
        if self.int8_activations and not self.exact_activations:
            # Activations quantized per row (symmetric int8), then an int8 x int8 GEMM (VNNI where the CPU has it).
            activations = flat.float()
            activation_step = activations.abs().amax(dim=-1, keepdim=True).clamp_(min=1e-10) / 127.0
            codes = torch.round(activations / activation_step).to(torch.int8)
            return torch._int_mm(codes, self.qweight.t()).float().mul_(activation_step).mul_(self.step_row)
        if self.mode == "int8":
            return torch.ops.aten._weight_int8pack_mm(self._activations(flat), self.qweight, self._like(self.scale))
        return torch.ops.aten._weight_int4pack_mm_for_cpu(
            self._activations(flat), self.packed, INT4_GROUP_SIZE, self._like(self.step_and_zero)
        )

    def _activations(self, flat: torch.Tensor) -> torch.Tensor:
        """What the kernels multiply: bf16, or fp32 while the fast step is checked (``exact_activations``)."""
        return flat.float() if self.exact_activations else _bf16(flat)

    def _like(self, scales: torch.Tensor) -> torch.Tensor:
        """The kernels want scales in the activations' dtype."""
        return scales.float() if self.exact_activations else scales

    def output(self, member: int, inputs: torch.Tensor) -> torch.Tensor:
        """This member's part of ``inputs @ W.T``, shared with its siblings while they read the same tensor."""
        if not self.shared:
            return self._own_product(member, inputs)
        if self._input is not inputs or member in self._served:
            if self._input is not None and len(self._served) < len(self.sizes):
                # Some siblings never took their part of the last product: they read other tensors.
                self._misses += 1
                if self._misses >= MAX_SHARING_MISSES:
                    self.shared = False
                    self._input = self._output = None
                    return self._own_product(member, inputs)
            self._input = inputs
            self._output = self.product(inputs.reshape(-1, self.in_features))
            self._served = set()
        assert self._output is not None
        self._served.add(member)
        result = self._output[:, self.rows[member]]
        if len(self._served) == len(self.sizes):
            self._input = self._output = None  # every sibling has its part: let the tensors go
        return result.reshape(*inputs.shape[:-1], self.sizes[member])

    def _own_product(self, member: int, inputs: torch.Tensor) -> torch.Tensor:
        """One member's product alone, for models whose siblings read different tensors."""
        flat = inputs.reshape(-1, self.in_features)
        rows = self.rows[member]
        if len(self.sizes) == 1:
            result = self.product(flat)
        elif flat.shape[0] > self.prefill_rows or (self.mode == "int4" and not _whole_blocks(rows)):
            result = self.product(flat)[:, rows]
        elif self.mode == "int8":
            result = torch.ops.aten._weight_int8pack_mm(
                self._activations(flat), self.qweight[rows], self._like(self.scale[rows])
            )
            result = self._finish(result, flat, rows)
        else:  # the member's own rows, packed by the kernel from our codes (never sliced out of its packing)
            if member not in self._member_packed:
                self._member_packed[member] = (
                    _kernel_packing(self.codes[rows]),
                    self.step_and_zero[:, rows].contiguous(),
                )
            packed, scales = self._member_packed[member]
            result = torch.ops.aten._weight_int4pack_mm_for_cpu(
                self._activations(flat), packed, INT4_GROUP_SIZE, self._like(scales)
            )
            result = self._finish(result, flat, rows)
        return result.reshape(*inputs.shape[:-1], self.sizes[member])

    def _finish(self, result: torch.Tensor, flat: torch.Tensor, rows: slice) -> torch.Tensor:
        if self.bias is not None:
            result = result + self.bias[rows]
        if self.low_rank is not None:  # fastpath._project adds it the same way, so both give the same scores
            down, up = self.low_rank
            result = result.float() + functional.linear(functional.linear(flat.float(), down), up[rows])
        if self.float_output:
            return result.float()
        return result if result.dtype == flat.dtype else result.to(flat.dtype)


def _whole_blocks(rows: slice) -> bool:
    return rows.start % INT4_BLOCK_ROWS == 0 and rows.stop % INT4_BLOCK_ROWS == 0


def _pack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    """Codes 0..15 [rows, columns] as bytes [rows, columns / 2]: column 2i in the low nibble, 2i + 1 in the high."""
    pairs = codes.view(codes.shape[0], -1, 2)
    return (pairs[..., 0] | (pairs[..., 1] << 4)).contiguous()


def _unpack_nibbles(packed: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`_pack_nibbles`: uint8 codes [rows, columns]."""
    return torch.stack([packed & 15, packed >> 4], dim=-1).view(packed.shape[0], -1)


def _kernel_packing(codes: torch.Tensor) -> torch.Tensor:
    """Our codes in the layout torch's int4 kernel wants on this CPU, made by torch itself."""
    return torch.ops.aten._convert_weight_to_int4pack_for_cpu(_unpack_nibbles(codes).to(torch.int32), 2)


def _relative_error(result: torch.Tensor, reference: torch.Tensor) -> float:
    """The norm of the difference over the norm of the reference; NaN when either holds a NaN."""
    scale = float(reference.norm())
    return float((result - reference).norm()) / max(scale, 1e-30)


def _checked_rows(count: int) -> torch.Tensor:
    """Every row of a small group; evenly strided rows of a large one (all offsets within a 64-row block occur)."""
    stride = max(1, -(-count // CHECKED_ROWS))
    if stride > 1 and stride % 2 == 0:
        stride += 1  # odd, so the rows visit every position inside the kernel's row blocks
    return torch.arange(0, count, stride)


def _percent(error: float) -> str:
    return "over 999%" if error > 9.99 else f"{error:.0%}"


def _bf16(tensor: torch.Tensor) -> torch.Tensor:
    return tensor if tensor.dtype == torch.bfloat16 else tensor.to(torch.bfloat16)


class QuantizedLinear(torch.nn.Module):
    """A stand-in for ``nn.Linear`` whose weights live, quantized, in a (possibly shared) group."""

    def __init__(self, group: _QuantizedWeights, member: int) -> None:
        super().__init__()
        self.group = group
        self.member = member
        self.in_features = group.in_features
        self.out_features = group.sizes[member]

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.group.output(self.member, inputs)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, mode={self.group.mode}"
