"""The native decode step (assistant/engine/_native.c through native.py): Penwright's own int4 x int8 kernels.

It rounds activations to int8 per block of 32 (as llama.cpp does), so its scores are near the forward's, not equal:
these tests bound the difference on small random models of every covered family, check that a kernel computing
something else is never used, that thread counts do not change a result, and that the switches that stand in for
other CPUs turn it off. The bundled model's perplexity through it is in test_quantize.py.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from assistant.engine import native
from assistant.engine.fastpath import NATIVE_STEP_TOLERANCE, FastDecoder
from assistant.engine.kvcache import new_cache
from assistant.engine.quantize import quantize_model

from .test_fastpath import compare_steps, forward_scores, tiny_model

available = pytest.mark.skipif(native.library()[0] is None, reason=f"no native step here: {native.library()[1]}")

FAMILIES = [
    ("llama", {}),
    ("llama", {"attention_bias": True, "mlp_bias": True}),  # a bias on every projection
    ("qwen2", {}),  # biases on q, k and v
    ("mistral", {"sliding_window": None}),
]


def int4_model(model_type: str, **overrides: Any) -> Any:
    model = tiny_model(model_type, **overrides)
    quantize_model(model, "int4")
    return model


@available
@pytest.mark.parametrize(("model_type", "overrides"), FAMILIES)
def test_native_step_is_near_the_forward_for_every_family(model_type: str, overrides: dict[str, Any]) -> None:
    model = int4_model(model_type, **overrides)
    fast = FastDecoder.for_model(model)
    assert fast is not None and fast.native is not None, fast.native_note if fast else "not covered"
    assert fast.verify(model) == "" and fast.native is not None, "its load-time probe keeps it"
    worst = compare_steps(model, [5, 17, 42, 99, 7], [11, 250, 3, 3, 64, 1], native=True)
    assert 0 < worst < NATIVE_STEP_TOLERANCE / 2, f"{model_type}: {worst}"


@available
def test_native_step_follows_the_cache_past_its_growth() -> None:
    """Keys and values written at positions beyond the buffers' first capacity (256) are read back right."""
    model = int4_model("llama", max_position_embeddings=1024)
    prompt = [(13 * index + 5) % 320 for index in range(250)]
    assert compare_steps(model, prompt, [7, 8, 9, 10, 11, 12, 13, 14, 15, 16], native=True) < NATIVE_STEP_TOLERANCE


@available
def test_thread_count_does_not_change_the_scores() -> None:
    model = int4_model("qwen2")
    fast = FastDecoder.for_model(model)
    assert fast is not None and fast.native is not None
    results = []
    threads = torch.get_num_threads()
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            cache = new_cache(model.config)
            forward_scores(model, [5, 17, 42], cache)
            with torch.inference_mode():
                results.append(torch.cat([fast.step(token, cache) for token in (11, 250, 3)]))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0], results[1]) and torch.equal(results[0], results[2])


@available
def test_a_native_kernel_that_computes_something_else_is_never_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a kernel fault on some CPU would do: the matrix check catches it and the TorchScript step decodes."""
    real_pointers = native.Int4Matrix.pointers

    def swapped(self: native.Int4Matrix) -> list[int | None]:
        codes, step, minimum, bias = real_pointers(self)
        return [codes, minimum, step, bias]  # steps read as minimums: plausible numbers, wrong products

    monkeypatch.setattr(native.Int4Matrix, "pointers", swapped)
    model = int4_model("llama")
    fast = FastDecoder.for_model(model)
    assert fast is not None and fast.native is None
    assert "self-check" in fast.native_note and "int4 product is off" in fast.native_note
    assert fast.verify(model) == "", "the TorchScript step takes over"
    assert compare_steps(model, [5, 17, 42], [11, 250, 3]) == 0.0


@available
@pytest.mark.slow
def test_a_native_step_with_a_wrong_layer_loop_is_never_used(
    loaded_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right matrices, wrong attention (no rotary positions), on the bundled model: the whole-step probe catches it.
    (Small random models attend almost evenly, so there only the arithmetic is checked.)"""
    model = loaded_model.model
    fast = FastDecoder.for_model(model)
    assert fast is not None and fast.native is not None
    real_run = fast.native.run

    def unrotated(hidden: Any, cos: Any, sin: Any, *rest: Any) -> Any:
        return real_run(hidden, torch.ones_like(cos), torch.zeros_like(sin), *rest)

    monkeypatch.setattr(fast.native, "run", unrotated)
    assert fast.verify(model) == ""
    assert fast.native is None and "differ from the model's own" in fast.native_note


def test_switches_that_stand_in_for_other_cpus_turn_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    loaded, reason = native._load()
    assert loaded is None and "ATEN_CPU_CAPABILITY=default" in reason
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    monkeypatch.setenv("PENWRIGHT_NATIVE", "0")
    loaded, reason = native._load()
    assert loaded is None and "switched off" in reason


def test_a_model_without_int4_weights_keeps_the_torchscript_step() -> None:
    model = tiny_model("llama")
    quantize_model(model, "int8")
    fast = FastDecoder.for_model(model)
    assert fast is not None and fast.native is None
    loaded, reason = native.library()
    assert fast.native_note == ("" if loaded is not None else reason), "not a fault: nothing more to report"


@available
def test_vnni_and_avx2_products_give_the_same_scores() -> None:
    """The VNNI kernels (one instruction where AVX2 takes two) must compute the very same integer sums."""
    if not native.use_vnni(True):
        pytest.skip("this CPU has no AVX-512 VNNI")
    model = int4_model("llama")
    fast = FastDecoder.for_model(model)
    assert fast is not None and fast.native is not None
    results = []
    try:
        for vnni in (True, False):
            assert native.use_vnni(vnni) == vnni
            cache = new_cache(model.config)
            forward_scores(model, [5, 17, 42], cache)
            with torch.inference_mode():
                results.append(torch.cat([fast.step(token, cache) for token in (11, 250, 3)]))
    finally:
        native.use_vnni(True)
    assert torch.equal(results[0], results[1])


def give_voice(model: Any, size: float = 0.5, seed: int = 3) -> None:
    """A made-up voice of rank 4 on q, v, o, gate and down (every place the step adds one), as switch_voice puts a
    saved one into quantized layers."""
    generator = torch.Generator().manual_seed(seed)
    for layer in model.model.layers:
        for module in (
            layer.self_attn.q_proj,
            layer.self_attn.v_proj,
            layer.self_attn.o_proj,
            layer.mlp.gate_proj,
            layer.mlp.down_proj,
        ):
            down = torch.randn((4, module.in_features), generator=generator) * size
            up = torch.randn((module.out_features, 4), generator=generator) * size
            module.group.set_low_rank(module.member, down / module.in_features**0.5, up)


@available
def test_a_voice_rides_along_in_the_native_step() -> None:
    model = int4_model("llama", attention_bias=True)
    plain = FastDecoder.for_model(model)
    assert plain is not None and plain.native is not None
    cache = new_cache(model.config)
    forward_scores(model, [5, 17, 42], cache)
    with torch.inference_mode():
        without = plain.step(11, cache)
    give_voice(model)
    fast = FastDecoder.for_model(model)
    assert fast is not None and fast.verify(model) == "" and fast.native is not None
    cache = new_cache(model.config)
    forward_scores(model, [5, 17, 42], cache)
    with torch.inference_mode():
        voiced = fast.step(11, cache)
    assert (voiced - without).abs().max() > 0.2 * without.abs().max(), "the voice changes the scores"
    assert compare_steps(model, [5, 17, 42, 99, 7], [11, 250, 3, 3, 64, 1], native=True) < NATIVE_STEP_TOLERANCE / 2
    assert compare_steps(model, [5, 17, 42], [11, 250, 3]) == 0.0, "the TorchScript step adds it as the forward does"


@available
def test_a_native_step_that_loses_the_voice_is_never_used() -> None:
    """A step that forgot the voice would write in the base model's: the whole-step probe, run on every switch of
    voice (Engine.set_voice), catches it and the TorchScript step (which has it) takes over."""
    model = int4_model("llama")
    give_voice(model, size=1.0)
    fast = FastDecoder.for_model(model)
    assert fast is not None and fast.native is not None
    fast.native.set_low_rank([None] * len(fast.native.matrices))
    assert fast.verify(model) == ""
    assert fast.native is None and "differ from the model's own" in fast.native_note


def test_the_native_steps_reference_multiplies_fp32_activations() -> None:
    """The forward the native step is checked against: the same int4 weights, fp32 activations (bf16 ones and the
    head's per-row int8 ones carry most of the forward's own error)."""
    from assistant.engine.fastpath import _exact_activations

    model = int4_model("llama")
    group = model.model.layers[0].self_attn.q_proj.group
    inputs = torch.randn((1, group.in_features), generator=torch.Generator().manual_seed(5))
    reference = torch.nn.functional.linear(inputs, group.dequantized())
    with _exact_activations(model, True):
        exact = group.product(inputs)
    usual = group.product(inputs)
    assert not group.exact_activations, "only while the step is checked"

    def error(result: torch.Tensor) -> float:
        return float((result.float() - reference).norm() / reference.norm())

    assert error(exact) < 1e-5 < error(usual)


@pytest.mark.parametrize("mode", ["int4", "int8"])
def test_the_torchscript_step_adds_a_voice_as_the_forward_does(mode: str) -> None:
    """Where the native step does not run (arm64, the "default" CPU class, int8 models) a voice still decodes on the
    TorchScript step, bit for bit as the forward computes it."""
    model = tiny_model("qwen2")
    quantize_model(model, mode)
    give_voice(model)
    fast = FastDecoder.for_model(model, native=False)
    assert fast is not None and fast.verify(model) == ""
    assert compare_steps(model, [5, 17, 42], [11, 250, 3]) == 0.0
