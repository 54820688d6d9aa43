"""Quantized weights on the CPU: close to full precision, fused siblings, the weights cache, and the real model.

The synthetic tests use small ``nn.Linear`` layers (no model, fast). The real-model tests load the bundled model
in the session profile: the default (auto) is int4, and int8/int4 must keep its perplexity within a few percent of
the unquantized model while generating fluent text.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from assistant.core.errors import ModelError
from assistant.core.settings import QUANTIZE_CHOICES
from assistant.engine import quantize
from assistant.engine.quantize import (
    PREFILL_ROWS,
    QuantizedLinear,
    _QuantizedWeights,
    cache_file,
    check_choice,
    quantize_model,
    resolve_mode,
)

STORY = Path(__file__).resolve().parents[2] / "bench" / "data" / "story.txt"


def relative_error(output: torch.Tensor, reference: torch.Tensor) -> float:
    output, reference = output.float(), reference.float()
    return ((output - reference).norm() / reference.norm()).item()


def quantized(linear: nn.Linear, mode: str) -> QuantizedLinear:
    """One layer quantized on its own (no siblings)."""
    return QuantizedLinear(_QuantizedWeights([linear], mode), 0)


def random_linear(in_features: int, out_features: int, bias: bool = True, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    linear = nn.Linear(in_features, out_features, bias=bias)
    with torch.no_grad():
        linear.weight.normal_(0, 0.05)
        if bias:
            linear.bias.normal_(0, 0.1)
    return linear


# --- one layer ----------------------------------------------------------------------------------------------------

ERROR_BOUND = {"int8": 0.02, "int4": 0.10}


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.parametrize("rows", [1, 3, PREFILL_ROWS["int4"] + 50])
def test_quantized_layer_is_close_to_full_precision(mode: str, rows: int) -> None:
    """One token (decode), a few tokens, and a long prompt (the dequantize-and-GEMM path) all stay close to fp32."""
    linear = random_linear(256, 192)
    layer = quantized(linear, mode)
    assert layer.group.mode == mode
    inputs = torch.randn(rows, 256)
    with torch.no_grad():
        reference, output = linear(inputs), layer(inputs)
    assert output.shape == reference.shape and output.dtype == torch.float32
    error = relative_error(output, reference)
    assert error < ERROR_BOUND[mode], f"{mode}, {rows} rows: relative error {error:.4f}"
    assert error > 1e-4, "the weights really are stored in fewer bits"


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_long_prompt_path_matches_the_few_row_kernel(mode: str) -> None:
    """A prompt above PREFILL_ROWS rows (dequantized fp32 GEMM) gives what decoding row by row (the kernel) gives."""
    linear = random_linear(128, 128)
    layer = quantized(linear, mode)
    inputs = torch.randn(PREFILL_ROWS[mode] + 16, 128)
    with torch.no_grad():
        together = layer(inputs)
        one_by_one = torch.cat([layer(row[None]) for row in inputs])
    # The kernel rounds activations (and, for int8, the row scales) to bf16: about 2^-8 relative.
    assert relative_error(together, one_by_one) < 0.01


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_batched_input_keeps_its_shape_and_dtype(mode: str) -> None:
    linear = random_linear(64, 128)
    layer = quantized(linear, mode)
    inputs = torch.randn(2, 5, 64)
    with torch.no_grad():
        assert layer(inputs).shape == (2, 5, 128)
        assert layer(inputs).dtype == torch.float32
        bf16 = layer(inputs.bfloat16())
        assert bf16.dtype == torch.bfloat16
        assert relative_error(bf16, linear(inputs)) < ERROR_BOUND[mode]


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_bias_is_added(mode: str) -> None:
    linear = random_linear(64, 64, bias=True)
    with torch.no_grad():
        linear.bias.fill_(3.0)  # large enough that a missing bias would be obvious
    layer = quantized(linear, mode)
    inputs = torch.randn(2, 64)
    with torch.no_grad():
        assert relative_error(layer(inputs), linear(inputs)) < ERROR_BOUND[mode]
        long = torch.randn(PREFILL_ROWS[mode] + 8, 64)
        assert relative_error(layer(long), linear(long)) < ERROR_BOUND[mode]


def test_int4_dequantized_weights_are_the_kernels_weights() -> None:
    """``dequantized()`` unpacks torch's CPU int4 packing: x @ W.T with it equals the kernel's product."""
    linear = random_linear(256, 192, bias=False)
    group = _QuantizedWeights([linear], "int4")
    weights = group.dequantized()
    assert weights.shape == (192, 256) and weights.dtype == torch.float32
    inputs = torch.randn(4, 256).bfloat16()
    kernel = torch.ops.aten._weight_int4pack_mm_for_cpu(inputs, group.packed, 32, group.step_and_zero).float()
    unpacked = inputs.float() @ weights.T
    # The kernel returns bf16 (8 bits of mantissa); a wrong unpacking (rows or nibbles swapped) is off by ~100%.
    assert (kernel - unpacked).abs().max() <= 0.01 * unpacked.abs().max()
    assert relative_error(weights, linear.weight) < 0.1


def gguf_q4_1_weight(
    rows: int, columns: int, scales: torch.Tensor, minimums: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A weight made like GGUF's Q4_1: per group of 32, ``step * code + minimum`` with codes 0..15 (0 and 15 used).

    Returns the weight [rows, columns] and its codes [rows, groups, 32].
    """
    torch.manual_seed(1)
    codes = torch.randint(0, 16, (rows, columns // 32, 32)).float()
    codes[..., 0], codes[..., 1] = 0, 15
    return (codes * scales[..., None] + minimums[..., None]).reshape(rows, columns), codes


def test_weights_on_a_4_bit_grid_come_back_exactly() -> None:
    """A 4-bit model (Q4_1 layout) gets its own weights back: steps and minimums that bf16 holds exactly."""
    rows, columns = 128, 128
    scales = 2.0 ** torch.randint(-9, -5, (rows, columns // 32)).float()
    minimums = -torch.randint(0, 16, (rows, columns // 32)).float() * scales
    weight, _codes = gguf_q4_1_weight(rows, columns, scales, minimums)
    linear = nn.Linear(columns, rows, bias=False)
    with torch.no_grad():
        linear.weight.copy_(weight)
    group = _QuantizedWeights([linear], "int4")
    assert torch.equal(group.dequantized(), weight)


def test_weights_on_a_4_bit_grid_with_fp16_scales_come_back_within_bf16_rounding() -> None:
    """GGUF stores steps and minimums as fp16; the kernel keeps them in bf16, which rounds them by at most 2^-9."""
    rows, columns = 128, 256
    torch.manual_seed(2)
    scales = (torch.rand(rows, columns // 32) * 0.01 + 0.001).half().float()
    minimums = (-torch.rand(rows, columns // 32) * 0.1).half().float()
    weight, codes = gguf_q4_1_weight(rows, columns, scales, minimums)
    linear = nn.Linear(columns, rows, bias=False)
    with torch.no_grad():
        linear.weight.copy_(weight)
    back = _QuantizedWeights([linear], "int4").dequantized().view(rows, columns // 32, 32)
    # value = code * step + (zero - 8 * step) with step and zero = minimum + 8 * step rounded to bf16.
    tolerance = 2**-8 * (8 * scales + (minimums + 8 * scales).abs()) + 1e-7
    assert ((back - weight.view_as(back)).abs() <= tolerance[..., None]).all()
    # Every weight lands on its own code: far closer than the half step random weights are off by.
    assert torch.equal(torch.round((back - minimums[..., None]) / scales[..., None]), codes)


# --- siblings, layer choice, the output head --------------------------------------------------------------------


class Attention(nn.Module):
    """Self-attention projections as transformers names them: q/k/v read the same tensor."""

    def __init__(self, hidden: int = 64, kv: int = 32) -> None:
        super().__init__()
        self.q_proj = nn.Linear(hidden, hidden)
        self.k_proj = nn.Linear(hidden, kv, bias=False)
        self.v_proj = nn.Linear(hidden, kv)
        self.o_proj = nn.Linear(hidden, hidden, bias=False)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        query, key, value = self.q_proj(inputs), self.k_proj(inputs), self.v_proj(inputs)
        repeat = query.shape[-1] // key.shape[-1]
        return self.o_proj(query * torch.sigmoid(key.repeat(1, repeat)) + value.repeat(1, repeat))


class CrossAttention(Attention):
    """Whisper/T5-style cross-attention: k and v read the encoder's output, not the tensor q reads."""

    def forward(self, inputs: torch.Tensor, memory: torch.Tensor | None = None) -> Any:  # type: ignore[override]
        return self.q_proj(inputs), self.k_proj(memory), self.v_proj(memory)


class Mlp(nn.Module):
    def __init__(self, hidden: int = 64, inner: int = 128) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, inner, bias=False)
        self.up_proj = nn.Linear(hidden, inner, bias=False)
        self.down_proj = nn.Linear(inner, hidden, bias=False)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.down_proj(nn.functional.silu(self.gate_proj(inputs)) * self.up_proj(inputs))


class TinyLm(nn.Module):
    """Attention, an MLP and an output head, laid out like a transformers causal LM."""

    def __init__(self, hidden: int = 64, vocab: int = 96, seed: int = 0) -> None:
        torch.manual_seed(seed)
        super().__init__()
        self.self_attn = Attention(hidden, hidden // 2)
        self.mlp = Mlp(hidden, 2 * hidden)
        self.lm_head = nn.Linear(hidden, vocab, bias=False)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        hidden = inputs + self.self_attn(inputs)
        return self.lm_head(hidden + self.mlp(hidden))


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_fused_qkv_gives_the_same_outputs_as_separate_layers(mode: str) -> None:
    torch.manual_seed(3)
    attention = Attention(hidden=64, kv=64)  # 64 rows each, so every layer could take int4 on its own too
    separate = {name: quantized(getattr(attention, name), mode) for name in ("q_proj", "k_proj", "v_proj")}
    fused = copy.deepcopy(attention)
    report = quantize_model(fused, mode)
    assert report.fused_groups == 1 and report.layers == 4
    assert fused.q_proj.group is fused.k_proj.group is fused.v_proj.group
    assert fused.o_proj.group is not fused.q_proj.group
    for rows in (1, 4, PREFILL_ROWS[mode] + 10):
        inputs = torch.randn(rows, 64)
        with torch.no_grad():
            for name, layer in separate.items():
                torch.testing.assert_close(getattr(fused, name)(inputs), layer(inputs), rtol=2**-7, atol=1e-5)
            # Two quantized layers in a row (q/k/v, then o): their errors add up.
            assert relative_error(fused(inputs), attention(inputs)) < 2 * ERROR_BOUND[mode]


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_siblings_fed_different_tensors_still_give_the_right_outputs(mode: str) -> None:
    """Cross-attention feeds k/v another tensor than q: the fused group notices and multiplies each on its own."""
    torch.manual_seed(4)
    attention = CrossAttention()
    reference = copy.deepcopy(attention)
    assert quantize_model(attention, mode).fused_groups == 1
    for _ in range(3):  # the first call turns sharing off; later calls must stay right too
        inputs, memory = torch.randn(3, 64), torch.randn(5, 64)
        with torch.no_grad():
            got = attention(inputs, memory)
            expected = reference(inputs, memory)
        for output, wanted in zip(got, expected, strict=True):
            assert output.shape == wanted.shape
            assert relative_error(output, wanted) < ERROR_BOUND[mode]
    # The same module used as self-attention (one tensor for all three) afterwards is still right.
    inputs = torch.randn(4, 64)
    with torch.no_grad():
        for output, wanted in zip(attention(inputs, inputs), reference(inputs, inputs), strict=True):
            assert relative_error(output, wanted) < ERROR_BOUND[mode]


def test_siblings_called_out_of_order_still_give_the_right_outputs() -> None:
    class ValueFirst(Attention):
        def forward(self, inputs: torch.Tensor) -> Any:
            return self.v_proj(inputs), self.k_proj(inputs), self.q_proj(inputs)

    torch.manual_seed(5)
    module = ValueFirst()
    reference = copy.deepcopy(module)
    quantize_model(module, "int8")
    inputs = torch.randn(2, 64)
    with torch.no_grad():
        for output, wanted in zip(module(inputs), reference(inputs), strict=True):
            assert relative_error(output, wanted) < ERROR_BOUND["int8"]


def test_layers_int4_cannot_hold_get_int8_and_tiny_layers_are_left_alone() -> None:
    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fits = nn.Linear(64, 128)  # whole groups of 32 columns and blocks of 64 rows
            self.odd_columns = nn.Linear(48, 64)  # 48 % 32 != 0
            self.odd_rows = nn.Linear(64, 96)  # 96 % 64 != 0
            self.narrow = nn.Linear(8, 64)  # fewer than 16 inputs
            self.few_outputs = nn.Linear(64, 4)  # fewer than 8 outputs
            self.float64 = nn.Linear(64, 64).double()  # a dtype the kernels do not take

    module = Mixed()
    reference = copy.deepcopy(module)
    report = quantize_model(module, "int4")
    assert module.fits.group.mode == "int4"
    assert module.odd_columns.group.mode == "int8" and module.odd_rows.group.mode == "int8"
    assert isinstance(module.narrow, nn.Linear) and isinstance(module.few_outputs, nn.Linear)
    assert isinstance(module.float64, nn.Linear)
    assert report.layers == 3 and report.skipped == 3 and report.fused_groups == 0
    assert 0 < report.weight_bytes_after < report.weight_bytes_before
    with torch.no_grad():
        for name, columns in (("fits", 64), ("odd_columns", 48), ("odd_rows", 64)):
            inputs = torch.randn(2, columns)
            assert relative_error(getattr(module, name)(inputs), getattr(reference, name)(inputs)) < 0.1


def test_fused_group_takes_int4_when_its_rows_together_fill_whole_blocks() -> None:
    """q (64 rows) + k (32) + v (32) = 128 rows: int4 as a group although k alone would not fit."""
    module = Attention(hidden=64, kv=32)
    quantize_model(module, "int4")
    assert module.q_proj.group.mode == "int4" and module.k_proj.group is module.q_proj.group


def test_output_head_gets_int8_even_in_int4_mode() -> None:
    model = TinyLm(hidden=64, vocab=128)
    reference = copy.deepcopy(model)
    report = quantize_model(model, "int4")
    assert isinstance(model.lm_head, QuantizedLinear) and model.lm_head.group.mode == "int8"
    assert model.self_attn.o_proj.group.mode == "int4" and model.mlp.down_proj.group.mode == "int4"
    assert report.mode == "int4" and report.layers == 8 and report.fused_groups == 2
    inputs = torch.randn(3, 64)
    with torch.no_grad():
        assert relative_error(model(inputs), reference(inputs)) < 0.1
    assert "int4 weights" in report.describe() and "MB" in report.describe()


def test_mode_none_leaves_the_model_alone() -> None:
    model = TinyLm()
    report = quantize_model(model, "none")
    assert report.mode == "none" and report.layers == 0
    assert isinstance(model.lm_head, nn.Linear)
    assert report.describe() == "full-precision weights"


# --- choosing the mode ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "device", "device_map", "four_bit", "expected"),
    [
        ("auto", "cpu", False, True, ("int4", "")),
        ("auto", "cpu", False, False, ("int8", "")),
        ("int8", "cpu", False, True, ("int8", "")),
        ("int4", "cpu", False, False, ("int4", "")),
        ("none", "cpu", False, True, ("none", "")),
        ("auto", "cuda", False, True, ("none", "")),
        ("auto", "cpu", True, False, ("none", "")),
        ("none", "cuda", False, False, ("none", "")),
        ("INT8", "cpu", False, False, ("int8", "")),
    ],
)
def test_resolve_mode(
    requested: str, device: str, device_map: bool, four_bit: bool, expected: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quantize, "kernel_timings", lambda: {"none": 0.6, "int8": 0.1, "int4": 0.07})  # AVX-512
    assert resolve_mode(requested, device, device_map, four_bit) == expected


@pytest.mark.parametrize(
    ("timings", "four_bit", "expected"),
    [
        ({"none": 0.14, "int8": 0.74, "int4": 2.2}, True, "none"),  # ATen's generic kernels (DEFAULT)
        ({"none": 0.14, "int8": 0.74, "int4": 2.2}, False, "none"),
        ({"none": 0.5, "int8": 0.6, "int4": 1.2}, True, "int8"),  # int4 slow, int8 not
        ({"none": 0.55, "int8": 0.09, "int4": 0.11}, True, "int4"),  # AVX2: int4 is still taken for a 4-bit model
        ({"none": 0.55, "int8": 0.09}, True, "int8"),  # no int4 kernel at all
    ],
)
def test_auto_passes_over_kernels_slower_than_full_precision_here(
    timings: dict[str, float], four_bit: bool, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quantize, "kernel_timings", lambda: timings)
    mode, note = resolve_mode("auto", "cpu", False, four_bit)
    assert mode == expected
    assert ("slower than full precision" in note) == (expected == "none")
    assert resolve_mode("int4", "cpu", False, four_bit) == ("int4", ""), "an explicit choice is kept"


def test_kernel_timings_are_measured_once_and_cover_every_mode() -> None:
    timings = quantize.kernel_timings()
    assert set(timings) == {"none", "int8", "int4"} and all(value > 0 for value in timings.values())
    assert quantize.kernel_timings() == timings


@pytest.mark.parametrize("requested", ["int8", "int4"])
@pytest.mark.parametrize(("device", "device_map"), [("cuda", False), ("mps", False), ("cpu", True)])
def test_explicit_request_on_a_gpu_runs_unquantized_and_says_why(requested: str, device: str, device_map: bool) -> None:
    mode, note = resolve_mode(requested, device, device_map)
    assert mode == "none"
    assert requested in note and "GPU" in note


def test_missing_kernels_fall_back_to_full_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quantize, "kernels_available", lambda: False)
    assert resolve_mode("auto", "cpu", False, True) == ("none", "")
    mode, note = resolve_mode("int4", "cpu", False)
    assert mode == "none" and "kernels" in note


@pytest.mark.parametrize("requested", ["bogus", "fp8", "int2"])
def test_unknown_choice_names_the_valid_ones(requested: str) -> None:
    with pytest.raises(ModelError) as caught:
        resolve_mode(requested, "cpu", False)
    message = str(caught.value)
    assert requested in message and all(choice in message for choice in QUANTIZE_CHOICES)
    with pytest.raises(ModelError):
        check_choice(requested)
    assert check_choice("") == "auto"


# --- the self-check at load --------------------------------------------------------------------------------------


def wrong_packing(codes: torch.Tensor) -> torch.Tensor:
    """What a kernel that reads another CPU's layout sees: the right codes in the wrong places."""
    return ORIGINAL_KERNEL_PACKING(codes.flip(0))


ORIGINAL_KERNEL_PACKING = quantize._kernel_packing


def assert_close_to(model: nn.Module, reference: nn.Module, bound: float) -> None:
    for rows in (1, 5, PREFILL_ROWS["int4"] + 20):
        inputs = torch.randn(rows, 64)
        with torch.no_grad():
            error = relative_error(model(inputs), reference(inputs))
        assert error < bound, f"{rows} rows: relative error {error:.4f}"


def test_int4_weights_whose_kernel_disagrees_fall_back_to_int8(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quantize, "_kernel_packing", wrong_packing)
    model = TinyLm(seed=21)
    reference = copy.deepcopy(model)
    report = quantize_model(model, "int4")
    int4_groups = {fallback.group for fallback in report.fallbacks}
    assert int4_groups == {"self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj"}
    assert all(fallback.failed == "int4" and fallback.runs_as == "int8" for fallback in report.fallbacks)
    assert "kernel is off by" in report.fallbacks[0].reason
    assert {module.group.mode for module in model.modules() if isinstance(module, QuantizedLinear)} == {"int8"}
    assert "fell back" in report.note and "4 to int8" in report.note and report.capability in report.note
    assert "4 groups fell back" in report.describe()
    assert_close_to(model, reference, ERROR_BOUND["int8"])


def test_a_large_group_is_checked_on_sampled_rows_and_still_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """1,536 rows are checked on every 5th; a packing off by one row inside each 64-row block is still caught."""
    linear = random_linear(128, 1536, bias=False)
    assert _QuantizedWeights([linear], "int4").verify([linear]) == ""

    def shifted_in_blocks(codes: torch.Tensor) -> torch.Tensor:
        blocks = codes.view(-1, 64, codes.shape[1])
        return ORIGINAL_KERNEL_PACKING(blocks.roll(1, dims=1).reshape(codes.shape))

    monkeypatch.setattr(quantize, "_kernel_packing", shifted_in_blocks)
    assert "kernel is off by" in _QuantizedWeights([linear], "int4").verify([linear])


def test_groups_whose_every_kernel_disagrees_keep_full_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    def garbage(self: Any, flat: torch.Tensor) -> torch.Tensor:
        return torch.randn(flat.shape[0], self.out_features)

    monkeypatch.setattr(_QuantizedWeights, "_few_rows", garbage)
    model = TinyLm(seed=22)
    reference = copy.deepcopy(model)
    report = quantize_model(model, "int4")
    assert report.layers == 0 and not any(isinstance(module, QuantizedLinear) for module in model.modules())
    assert "to full precision" in report.note
    assert_close_to(model, reference, 1e-6)


def test_a_kernel_that_raises_is_a_failed_check_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(self: Any, flat: torch.Tensor) -> torch.Tensor:
        if self.mode == "int4":
            raise RuntimeError("could not create a primitive")
        return ORIGINAL_FEW_ROWS(self, flat)

    monkeypatch.setattr(_QuantizedWeights, "_few_rows", crash)
    model = TinyLm(seed=23)
    report = quantize_model(model, "int4")
    assert report.fallbacks and "could not create a primitive" in report.fallbacks[0].reason
    assert report.layers == 8


ORIGINAL_FEW_ROWS = _QuantizedWeights._few_rows


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_right_weights_pass_the_check_fresh_and_from_the_cache(tmp_path: Path, mode: str) -> None:
    cache = tmp_path / f"{mode}.safetensors"
    fresh = quantize_model(TinyLm(seed=24), mode, cache=cache)
    again = quantize_model(TinyLm(seed=24), mode, cache=cache)
    assert not fresh.fallbacks and not again.fallbacks and again.from_cache
    assert fresh.note == again.note == ""


def test_codes_stored_wrong_are_caught_against_the_models_own_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in our own packing (kernel and long-prompt path agree, both wrong) still fails the fresh check."""
    real = quantize._pack_nibbles
    monkeypatch.setattr(quantize, "_pack_nibbles", lambda codes: real(codes.flip(1)))
    report = quantize_model(TinyLm(seed=25), "int4")
    assert report.fallbacks and "off the model's" in report.fallbacks[0].reason


def test_an_int8_matmul_that_saturates_is_not_used_for_the_head(monkeypatch: pytest.MonkeyPatch) -> None:
    """What oneDNN does without VNNI (AVX2): 16-bit pair sums saturate; random codes hide it, the worst case not."""
    real = torch._int_mm

    def saturating(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return real(left, right).clamp(-(2**15), 2**15 - 1)

    monkeypatch.setattr(torch, "_int_mm", saturating)
    monkeypatch.setattr(quantize, "_INT8_MATMUL_WORKS", None)
    assert not quantize.int8_matmul_works()
    model = TinyLm(seed=26)
    reference = copy.deepcopy(model)
    quantize_model(model, "int4")
    assert not model.lm_head.group.int8_activations, "the head takes the weight-only int8 kernel"
    assert_close_to(model, reference, ERROR_BOUND["int4"])
    monkeypatch.setattr(quantize, "_INT8_MATMUL_WORKS", None)


# --- the cache of quantized weights -----------------------------------------------------------------------------


def assert_same_outputs(first: nn.Module, second: nn.Module, columns: int = 64) -> None:
    for rows in (1, 3, 60):
        inputs = torch.randn(rows, columns)
        with torch.no_grad():
            assert torch.equal(first(inputs), second(inputs)), f"{rows} rows"


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_second_copy_of_a_model_loads_from_the_cache(tmp_path: Path, mode: str) -> None:
    cache = cache_file("tiny-model", mode, tmp_path / "quantized")
    first = TinyLm(seed=7)
    report = quantize_model(first, mode, cache=cache)
    assert not report.from_cache and cache.is_file()
    assert not list(cache.parent.glob("*.partial-*")), "no temporary file is left behind"
    second = TinyLm(seed=7)
    again = quantize_model(second, mode, cache=cache)
    assert again.from_cache and again.layers == report.layers and again.weight_bytes_after == report.weight_bytes_after
    assert_same_outputs(first, second)
    # The weights really come from the file: a copy whose own weight matrices were wiped computes the same.
    wiped = TinyLm(seed=7)
    with torch.no_grad():
        for module in wiped.modules():
            if isinstance(module, nn.Linear):
                module.weight.zero_()
    assert quantize_model(wiped, mode, cache=cache).from_cache
    assert_same_outputs(first, wiped)


def test_cache_file_names_differ_by_model_and_mode(tmp_path: Path) -> None:
    names = {cache_file(model, mode, tmp_path) for model in ("a", "b") for mode in ("int8", "int4")}
    assert len(names) == 4
    assert cache_file("a", "int8", tmp_path).name.startswith("int8-")
    assert cache_file("a", "int8", tmp_path) == cache_file("a", "int8", tmp_path)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: os.urandom(4096), id="garbage"),
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: b"", id="empty"),
    ],
)
def test_damaged_cache_is_ignored_and_rewritten(tmp_path: Path, damage: Any) -> None:
    cache = tmp_path / "int8-x.safetensors"
    reference = TinyLm(seed=8)
    quantize_model(reference, "int8", cache=cache)
    cache.write_bytes(damage(cache.read_bytes()))
    model = TinyLm(seed=8)
    report = quantize_model(model, "int8", cache=cache)
    assert not report.from_cache and report.layers == 8
    assert_same_outputs(model, reference)
    later = TinyLm(seed=8)
    assert quantize_model(later, "int8", cache=cache).from_cache, "the damaged file was replaced by a good one"
    assert_same_outputs(later, reference)


def test_cache_of_another_shape_is_not_used(tmp_path: Path) -> None:
    cache = tmp_path / "int4-x.safetensors"
    quantize_model(TinyLm(hidden=64, seed=9), "int4", cache=cache)
    bigger = TinyLm(hidden=128, seed=10)
    reference = copy.deepcopy(bigger)
    report = quantize_model(bigger, "int4", cache=cache)
    assert not report.from_cache
    inputs = torch.randn(3, 128)
    with torch.no_grad():
        assert relative_error(bigger(inputs), reference(inputs)) < 0.1
    assert quantize_model(TinyLm(hidden=128, seed=10), "int4", cache=cache).from_cache, "rewritten for the new shape"


def test_cache_that_cannot_be_written_costs_only_speed(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    model = TinyLm(seed=11)
    reference = copy.deepcopy(model)
    report = quantize_model(model, "int8", cache=blocker / "quantized" / "int8-x.safetensors")
    assert report.layers == 8 and not report.from_cache
    inputs = torch.randn(2, 64)
    with torch.no_grad():
        assert relative_error(model(inputs), reference(inputs)) < ERROR_BOUND["int8"]


def test_cache_write_failure_inside_safetensors_costs_only_speed(tmp_path: Path) -> None:
    cache = tmp_path / "int8-x.safetensors"
    # What a read-only cache folder or a full disk does to save_file; as root, a folder in the way does the same.
    cache.with_name(f"{cache.name}.partial-{os.getpid()}").mkdir()
    model = TinyLm(seed=12)
    report = quantize_model(model, "int8", cache=cache)
    assert report.layers == 8


# --- the real bundled model ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def profile(folder: Path) -> Iterator[None]:
    previous = os.environ.get("PENWRIGHT_PROFILE")
    os.environ["PENWRIGHT_PROFILE"] = str(folder)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("PENWRIGHT_PROFILE", None)
        else:
            os.environ["PENWRIGHT_PROFILE"] = previous


def load(session_profile: Path, mode: str) -> Any:
    from assistant.engine.models import load_model

    with profile(session_profile):
        return load_model(device="cpu", quantize=mode)


@pytest.fixture(scope="module")
def fp32_model(loaded_model: Any, session_profile: Path) -> Any:
    """The bundled model unquantized (``loaded_model`` first, so the GGUF conversion exists)."""
    return load(session_profile, "none")


@pytest.fixture(scope="module")
def int8_model(loaded_model: Any, session_profile: Path) -> Any:
    """The bundled model in int8 (quantized afresh, or read from the cache a CLI test left)."""
    return load(session_profile, "int8")


@pytest.fixture(scope="module")
def story_ids(loaded_model: Any) -> torch.Tensor:
    text = STORY.read_text(encoding="utf-8")
    return loaded_model.tokenizer(text, return_tensors="pt")["input_ids"][:, :400]  # the whole story: 397 tokens


def perplexity(model: Any, ids: torch.Tensor) -> float:
    """One pass over the whole text: the long-prompt path (dequantized weights)."""
    with torch.inference_mode():
        return math.exp(model(input_ids=ids, labels=ids).loss.item())


def with_cache(cache: Any, model: Any) -> dict[str, Any]:
    """The forward's cache keyword: transformers 5.2x renamed ``past_key_values`` to ``cache`` (as the engine knows)."""
    import inspect

    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    return {name: cache, "use_cache": True}


def chunked_perplexity(model: Any, ids: torch.Tensor, chunk: int = 16) -> float:
    """The text fed 16 tokens at a time through a KV cache: the few-row quantized kernels do the work."""
    from assistant.engine.kvcache import new_cache

    cache = new_cache(model.config)
    losses: list[float] = []
    with torch.inference_mode():
        for start in range(0, ids.shape[1] - 1, chunk):
            piece = ids[:, start : start + chunk]
            logits = model(input_ids=piece, **with_cache(cache, model)).logits[0].float()
            targets = ids[0, start + 1 : start + 1 + piece.shape[1]]
            scores = torch.log_softmax(logits[: targets.shape[0]], dim=-1)
            losses.extend((-scores[torch.arange(targets.shape[0]), targets]).tolist())
    return math.exp(sum(losses) / len(losses))


@pytest.mark.slow
def test_bundled_model_loads_with_int4_weights_by_default(loaded_model: Any) -> None:
    from assistant.engine.gguf import gguf_file_type
    from assistant.engine.sources import bundled_model_path

    assert gguf_file_type(bundled_model_path()) == 3, "the bundled GGUF is Q4_1"
    report = loaded_model.quantization
    assert loaded_model.weights == "int4"
    assert report.mode == "int4" and report.requested == "auto" and report.note == ""
    assert report.layers == 211 and report.fused_groups == 60 and report.skipped == 0
    # int4 keeps two copies of its codes: torch's packing for this CPU, and our own layout for long prompts.
    assert report.weight_bytes_after < report.weight_bytes_before / 3
    assert report.fallbacks == [], "every weight group passed its self-check on this CPU"
    model = loaded_model.model
    attention = model.model.layers[0].self_attn
    assert attention.q_proj.group is attention.k_proj.group is attention.v_proj.group
    assert model.lm_head.group.mode == "int8", "the output head keeps 8 bits"
    from assistant.engine import native

    if native.library()[0] is not None:  # the native int4 step decodes fastest in fp32, bf16 CPU or not
        assert model.dtype == torch.float32
    elif quantize.bf16_is_fast():
        assert loaded_model.placement.dtype_name == "bfloat16" and model.dtype == torch.bfloat16


@pytest.mark.slow
def test_no_quantization_keeps_float32_weights(fp32_model: Any) -> None:
    assert fp32_model.weights == "float32" and fp32_model.model.dtype == torch.float32
    assert fp32_model.quantization.mode == "none" and fp32_model.quantization.requested == "none"
    assert not any(isinstance(module, QuantizedLinear) for module in fp32_model.model.modules())


@pytest.mark.slow
def test_int8_model_reports_its_weights(int8_model: Any) -> None:
    report = int8_model.quantization
    assert int8_model.weights == "int8" and report.mode == "int8" and report.requested == "int8"
    assert not report.from_cache
    assert report.weight_bytes_after < report.weight_bytes_before / 3


@pytest.mark.slow
def test_quantized_perplexity_stays_within_3_percent_of_full_precision(
    loaded_model: Any, int8_model: Any, fp32_model: Any, story_ids: torch.Tensor
) -> None:
    assert story_ids.shape[1] > 350
    baseline = perplexity(fp32_model.model, story_ids)
    baseline_chunked = chunked_perplexity(fp32_model.model, story_ids)
    assert 5 < baseline < 100, "the text reads as text to the model"
    assert baseline_chunked == pytest.approx(baseline, rel=1e-3)
    for name, loaded in (("int8", int8_model), ("int4", loaded_model)):
        whole = perplexity(loaded.model, story_ids)
        chunked = chunked_perplexity(loaded.model, story_ids)
        assert whole / baseline - 1 < 0.03, f"{name}: {whole:.3f} vs {baseline:.3f}"
        assert chunked / baseline_chunked - 1 < 0.03, (
            f"{name} (16-token chunks): {chunked:.3f} vs {baseline_chunked:.3f}"
        )
    # int4 gives the Q4_1 model back the weights it came with: the change is a fraction of a percent.
    assert abs(perplexity(loaded_model.model, story_ids) / baseline - 1) < 0.01


def stepped_perplexity(model: Any, ids: torch.Tensor, native_step: bool) -> float:
    """The text one token at a time through the fast decode step (native or TorchScript): what decoding computes."""
    from assistant.engine.fastpath import FastDecoder
    from assistant.engine.kvcache import new_cache

    fast = FastDecoder.for_model(model, native=native_step)
    assert fast is not None and (fast.native is not None) == native_step, fast.native_note if fast else ""
    cache = new_cache(model.config)
    total = 0.0
    tokens = ids[0].tolist()
    with torch.inference_mode():
        for position in range(len(tokens) - 1):
            scores = fast.step(tokens[position], cache)
            total -= float(torch.log_softmax(scores, dim=-1)[0, tokens[position + 1]])
    return math.exp(total / (len(tokens) - 1))


@pytest.mark.slow
def test_native_step_perplexity_is_within_1_percent_of_full_precision(
    loaded_model: Any, fp32_model: Any, story_ids: torch.Tensor
) -> None:
    """The native step rounds activations to int8 per block of 32 (as llama.cpp does): the text it decodes must
    still read as the full-precision model reads it. Stepped token by token, as decoding runs."""
    from assistant.engine import native

    if native.library()[0] is None:
        pytest.skip(f"no native step here: {native.library()[1]}")
    baseline = perplexity(fp32_model.model, story_ids)
    stepped = stepped_perplexity(loaded_model.model, story_ids, native_step=True)
    assert abs(stepped / baseline - 1) < 0.01, f"native step {stepped:.3f} vs full precision {baseline:.3f}"


def fluent(text: str) -> bool:
    words = text.split()
    wordlike = [word for word in words if any(char.isalpha() for char in word)]
    return len(words) >= 12 and len(wordlike) >= 0.8 * len(words) and len(set(words)) >= 0.5 * len(words)


@pytest.mark.slow
def test_greedy_text_from_quantized_models_is_fluent(engine: Any, int8_model: Any) -> None:
    from assistant.core.prompts import Prompt
    from assistant.core.settings import SamplerSettings
    from assistant.engine.generate import Engine

    prompt = Prompt(text="The old lighthouse keeper")
    settings = SamplerSettings(temperature=0, repetition_penalty=1.1, max_new_tokens=32)
    for name, current in (("int4", engine), ("int8", Engine(int8_model))):
        stream = current.stream(prompt, settings)
        text = stream.text()
        assert stream.stats.weights == name
        assert fluent(text), f"{name}: {text!r}"


@pytest.mark.slow
def test_second_load_reads_the_quantized_weights_cache(
    loaded_model: Any, int8_model: Any, session_profile: Path, story_ids: torch.Tensor
) -> None:
    """A warm load reads int8/int4 weights from the cache and computes exactly what the fresh quantization did.

    Compared on a long prompt (the dequantize path), a 12-token chunk (the kernel with several rows, which once
    crashed on cached int8 weights that were not 16-byte aligned) and one decode step.
    """
    from assistant.engine.kvcache import new_cache

    assert (session_profile / "cache" / "quantized").is_dir()
    for fresh, mode in ((loaded_model, "int4"), (int8_model, "int8")):
        warm = load(session_profile, mode)
        assert warm.quantization.from_cache and warm.weights == mode
        assert warm.quantization.layers == fresh.quantization.layers
        with torch.inference_mode():
            outputs = []
            for model in (fresh.model, warm.model):
                cache = new_cache(model.config)
                prefill = model(input_ids=story_ids[:, :100], **with_cache(cache, model)).logits
                chunk = model(input_ids=story_ids[:, 100:112], **with_cache(cache, model)).logits
                step = model(input_ids=story_ids[:, 112:113], **with_cache(cache, model)).logits
                outputs.append((prefill, chunk, step))
        for fresh_scores, warm_scores in zip(outputs[0], outputs[1], strict=True):
            assert torch.equal(fresh_scores, warm_scores), mode
