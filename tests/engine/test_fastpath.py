"""The lean decode step: the same scores as the model's own forward, for the models it covers, and a fallback for
the rest.

Small random Llama, Qwen2 and Mistral models (built from a config, no download) check the arithmetic in fp32 and
with quantized weights; the bundled model checks it bit for bit and through the engine: the same seed gives the same
text with the fast step and without it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache

from assistant.core.prompts import Message, Prompt
from assistant.core.settings import SamplerSettings
from assistant.engine.fastpath import FastDecoder, supports
from assistant.engine.generate import Engine
from assistant.engine.kvcache import new_cache
from assistant.engine.quantize import quantize_model

STORY = Path(__file__).resolve().parents[2] / "bench" / "data" / "story.txt"


def tiny_model(model_type: str, **overrides: Any) -> Any:
    """A random two-layer model of this family: 64 rows per projection so int4 applies, grouped-query attention."""
    from transformers import AutoConfig

    settings: dict[str, Any] = {
        "vocab_size": 320,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "tie_word_embeddings": False,
    }
    settings.update(overrides)
    config = AutoConfig.for_model(model_type, **settings)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    return model.eval()


def forward_scores(model: Any, ids: list[int], cache: Any) -> torch.Tensor:
    import inspect

    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    with torch.inference_mode():
        output = model(input_ids=torch.tensor([ids]), **{name: cache, "use_cache": True})
    return output.logits[:, -1, :].float()


def compare_steps(model: Any, prompt: list[int], steps: list[int], script: bool = True, native: bool = False) -> float:
    """Largest score difference between the fast step and the model's forward, token by token after a prompt.

    The TorchScript step unless ``native``: the native step (test_native.py) rounds activations to int8 by design."""
    fast = FastDecoder.for_model(model, script=script, native=native)
    assert fast is not None
    assert fast.scripted == script, "TorchScript compiles the layer loop here"
    reference_cache, fast_cache = new_cache(model.config), new_cache(model.config)
    forward_scores(model, prompt, reference_cache)
    forward_scores(model, prompt, fast_cache)
    worst = 0.0
    with torch.inference_mode():
        for token in steps:
            wanted = forward_scores(model, [token], reference_cache)
            got = fast.step(token, fast_cache)
            assert got.shape == wanted.shape and got.dtype == torch.float32
            worst = max(worst, (got - wanted).abs().max().item() / wanted.abs().max().item())
    assert fast_cache.get_seq_length() == reference_cache.get_seq_length() == len(prompt) + len(steps)
    return worst


@pytest.mark.parametrize(
    ("model_type", "overrides"),
    [
        ("llama", {}),
        ("llama", {"attention_bias": True, "mlp_bias": True}),
        ("qwen2", {}),  # biases on q, k and v
        ("mistral", {"sliding_window": None}),
    ],
)
@pytest.mark.parametrize("mode", ["none", "int8", "int4"])
@pytest.mark.parametrize("script", [True, False], ids=["torchscript", "python"])
def test_fast_step_gives_the_forward_scores(
    model_type: str, overrides: dict[str, Any], mode: str, script: bool
) -> None:
    model = tiny_model(model_type, **overrides)
    quantize_model(model, mode)
    worst = compare_steps(model, [5, 17, 42, 99, 7], [11, 250, 3, 3, 64, 1], script=script)
    assert worst == 0.0, f"{model_type} {mode}: relative difference {worst}"


@pytest.mark.parametrize(
    "overrides",
    [
        {"head_dim": 32},  # wider heads than hidden_size / heads
        {"tie_word_embeddings": True},
        {"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}},
        {"num_key_value_heads": 4},  # plain multi-head attention
    ],
    ids=["head-dim", "tied", "yarn", "no-gqa"],
)
def test_other_llama_shapes_give_the_forward_scores(overrides: dict[str, Any]) -> None:
    model = tiny_model("llama", **overrides)
    quantize_model(model, "int8")
    assert compare_steps(model, list(range(3, 90)), [7, 8, 9, 200]) == 0.0


def test_bf16_models_match_bit_for_bit() -> None:
    """bf16 activations, as the app runs quantized models on CPUs with native bf16."""
    model = tiny_model("llama")
    quantize_model(model, "int4")
    model.to(torch.bfloat16)
    assert compare_steps(model, [5, 17, 42, 99, 7], [11, 250, 3, 3, 64, 1]) == 0.0


def test_a_failed_step_leaves_the_cache_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model("llama")
    fast = FastDecoder.for_model(model)
    assert fast is not None
    cache = new_cache(model.config)
    forward_scores(model, [5, 17, 42], cache)
    wanted = fast.step(9, copy.deepcopy(cache))

    def fail(*_args: Any) -> torch.Tensor:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(fast, "_run", fail)
    with pytest.raises(RuntimeError):
        fast.step(9, cache)
    assert all(layer.get_seq_length() == 3 for layer in cache.layers)
    monkeypatch.undo()
    assert torch.equal(fast.step(9, cache), wanted)


def test_rope_scaling_of_llama3_is_honoured() -> None:
    scaling = {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
        "rope_theta": 500000.0,
    }
    model = tiny_model("llama", rope_scaling=scaling)
    assert compare_steps(model, list(range(1, 120)), [7, 8, 9]) == 0.0


@pytest.mark.parametrize(
    ("model_type", "overrides"),
    [
        ("mistral", {"sliding_window": 16}),  # attention sees only a window: not reproduced
        ("qwen2", {"use_sliding_window": True, "sliding_window": 16, "max_window_layers": 0}),
        ("qwen3", {}),  # norms on queries and keys
        ("gpt2", {"n_embd": 64, "n_layer": 2, "n_head": 4}),
        ("llama", {"hidden_act": "gelu"}),
    ],
)
def test_other_models_keep_their_own_forward(model_type: str, overrides: dict[str, Any]) -> None:
    if model_type == "gpt2":
        from transformers import GPT2Config

        model = AutoModelForCausalLM.from_config(GPT2Config(vocab_size=320, **overrides)).eval()
    else:
        model = tiny_model(model_type, **overrides)
    assert not supports(model)
    assert FastDecoder.for_model(model) is None


def test_a_model_in_training_mode_is_not_taken() -> None:
    model = tiny_model("llama").train()
    assert FastDecoder.for_model(model) is None


def test_eager_attention_keeps_the_forward() -> None:
    model = tiny_model("llama", attn_implementation="eager")
    assert model.config._attn_implementation == "eager"
    assert FastDecoder.for_model(model) is None


def test_remote_code_that_reuses_the_class_names_is_not_taken() -> None:
    """A model's own modeling file may copy Llama's class names and change the arithmetic."""
    model = tiny_model("llama")
    original = type(model.model.layers[0])
    imitation = type(original.__name__, (original,), {"__module__": "transformers_modules.someone.model"})
    for layer in model.model.layers:
        layer.__class__ = imitation
    assert not supports(model)
    assert FastDecoder.for_model(model) is None


def test_only_growing_caches_are_extended() -> None:
    model = tiny_model("llama")
    fast = FastDecoder.for_model(model)
    assert fast is not None
    assert fast.accepts(new_cache(model.config))
    assert not fast.accepts(DynamicCache())  # a plain cache: the engine runs the model's forward instead
    assert not fast.accepts(None)


# --- the bundled model ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_bundled_model_takes_the_fast_step_with_identical_scores(loaded_model: Any, engine: Any) -> None:
    assert engine.fast_decode, "the bundled model (Llama, int4) decodes through the lean loop"
    tokenizer = loaded_model.tokenizer
    prompt = tokenizer(STORY.read_text(encoding="utf-8")[:300])["input_ids"]
    steps = tokenizer(" The lighthouse keeper lit the lamp and waited for the boats.")["input_ids"]
    assert compare_steps(loaded_model.model, prompt, steps) == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_engine_text_is_the_same_with_and_without_the_fast_step(loaded_model: Any, temperature: float) -> None:
    fast, plain = Engine(loaded_model, native_step=False), Engine(loaded_model, fast_decode=False)
    assert fast.fast_decode and not plain.fast_decode
    settings = SamplerSettings(temperature=temperature, max_new_tokens=48, seed=11)
    prompt = Prompt(text=STORY.read_text(encoding="utf-8")[:400])
    fast_stream, plain_stream = fast.stream(prompt, settings), plain.stream(prompt, settings)
    fast_text, plain_text = fast_stream.text(), plain_stream.text()
    assert len(fast_text.split()) > 10
    assert fast_text == plain_text
    assert fast_stream.stats.new_tokens == plain_stream.stats.new_tokens


@pytest.mark.slow
def test_chat_turns_reuse_the_cache_the_fast_step_filled(loaded_model: Any) -> None:
    engine = Engine(loaded_model)
    settings = SamplerSettings(temperature=0, max_new_tokens=24)
    messages: list[Message] = [{"role": "user", "content": "Name a colour of the sea."}]
    first = engine.stream(Prompt(messages=messages), settings)
    answer = first.text()
    assert answer.strip()
    messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": "And of the sky?"}]
    second = engine.stream(Prompt(messages=messages), settings)
    assert second.text().strip()
    new_message_tokens = engine.count_tokens("And of the sky?")
    assert second.stats.prefill_tokens < new_message_tokens + 20, "turn 2 prefills only the new message"
    assert second.stats.prefill_tokens < second.stats.prompt_tokens // 2


@pytest.mark.slow
def test_an_engine_whose_fast_step_fails_decodes_through_the_forward(
    loaded_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: FastDecoder, token: int, cache: Any) -> torch.Tensor:
        raise RuntimeError("the scripted loop cannot run here")

    monkeypatch.setattr(FastDecoder, "step", broken)
    engine = Engine(loaded_model)
    assert not engine.fast_decode
    assert "fast decode step is off" in engine.notes and "cannot run here" in engine.notes
    text = engine.generate(Prompt(text="The sea was calm and"), SamplerSettings(temperature=0, max_new_tokens=8))
    assert text.strip()


@pytest.mark.slow
def test_a_fast_step_that_computes_other_scores_is_never_used(
    loaded_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a TorchScript or kernel fault on some CPU would do: the load-time probe catches it, the text is right."""
    real_step = FastDecoder.step

    def wrong(self: FastDecoder, token: int, cache: Any) -> torch.Tensor:
        scores = real_step(self, token, cache)
        return scores.flip(-1)  # plausible numbers, wrong tokens

    monkeypatch.setattr(FastDecoder, "step", wrong)
    engine = Engine(loaded_model)
    assert not engine.fast_decode
    assert "self-check" in engine.decode_path and "differ from the model's own" in engine.notes
    from assistant.engine.session import EngineSession

    assert "fast decode step is off" in EngineSession(engine).describe().note, "the status bar says why"
    plain = Engine(loaded_model, fast_decode=False)
    settings = SamplerSettings(temperature=0, max_new_tokens=16)
    prompt = Prompt(text="The sea was calm and")
    assert engine.generate(prompt, settings) == plain.generate(prompt, settings)


def test_the_load_time_probe_passes_for_every_covered_family() -> None:
    for model_type, overrides in (("llama", {}), ("qwen2", {}), ("mistral", {"sliding_window": None})):
        for mode in ("none", "int8", "int4"):
            model = tiny_model(model_type, **overrides)
            quantize_model(model, mode)
            for script in (True, False):
                fast = FastDecoder.for_model(model, script=script)
                assert fast is not None
                assert fast.verify(model) == "", f"{model_type} {mode} script={script}"
