"""Long prompts of bf16 CPU models attend in fp32: same results as SDPA (closer to fp32), short inputs untouched."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from assistant.engine import attention
from assistant.engine.attention import FP32_FROM_ROWS, NAME, use_fp32_for_long_prompts


def tiny_llama() -> Any:
    config = AutoConfig.for_model(
        "llama",
        vocab_size=320,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval()


def scores(model: Any, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=ids).logits.float()


def test_long_prompts_attend_in_fp32_and_short_ones_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    reference = tiny_llama()
    plain = copy.deepcopy(reference).to(torch.bfloat16)
    switched = copy.deepcopy(plain)
    assert use_fp32_for_long_prompts(switched)
    assert switched.config._attn_implementation == NAME
    assert plain.config._attn_implementation == "sdpa"

    seen: list[torch.dtype] = []
    from transformers.integrations import sdpa_attention

    original = sdpa_attention.sdpa_attention_forward

    def spy(module: Any, query: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        seen.append(query.dtype)
        return original(module, query, *args, **kwargs)

    monkeypatch.setattr(sdpa_attention, "sdpa_attention_forward", spy)
    generator = torch.Generator().manual_seed(1)
    long_ids = torch.randint(0, 320, (1, FP32_FROM_ROWS + 72), generator=generator)
    short_ids = long_ids[:, :12]

    seen.clear()
    long_switched = scores(switched, long_ids)
    assert seen == [torch.float32, torch.float32], "both layers attend in fp32 for a long prompt"
    seen.clear()
    short_switched = scores(switched, short_ids)
    assert seen == [torch.bfloat16, torch.bfloat16], "short inputs keep bf16"
    monkeypatch.setattr(sdpa_attention, "sdpa_attention_forward", original)

    assert torch.equal(short_switched, scores(plain, short_ids))
    long_plain, long_fp32 = scores(plain, long_ids), scores(reference, long_ids)
    error_switched = (long_switched - long_fp32).norm() / long_fp32.norm()
    error_plain = (long_plain - long_fp32).norm() / long_fp32.norm()
    assert error_switched < 0.02 and error_plain < 0.02
    assert error_switched <= error_plain * 1.05, "fp32 attention is not less accurate than bf16"


def test_fp32_models_keep_sdpa() -> None:
    model = tiny_llama()
    assert not use_fp32_for_long_prompts(model)
    assert model.config._attn_implementation == "sdpa"


def test_a_refusing_model_keeps_its_attention(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_llama().to(torch.bfloat16)

    def refuse(_name: str) -> None:
        raise ValueError("this model does not support that attention")

    monkeypatch.setattr(model, "set_attn_implementation", refuse)
    assert not use_fp32_for_long_prompts(model)
    assert model.config._attn_implementation == "sdpa"
    assert attention._registered  # registering is harmless; only the model's own choice matters


@pytest.mark.slow
def test_bundled_bf16_model_uses_fp32_attention_for_long_prompts(loaded_model: Any) -> None:
    model = loaded_model.model
    expected = NAME if model.dtype == torch.bfloat16 else "sdpa"
    assert model.config._attn_implementation == expected
