"""The in-place growing KV cache: the same tokens as transformers' own cache, cropping for prefix reuse, growth.

The real-model tests run the bundled model (int4 by default) with ``new_cache`` and with a plain ``DynamicCache``
fed the same chunks: the text and the scores must be the same, since the cache only changes where keys and values
are kept, not what attention sees.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from assistant.core.prompts import Prompt
from assistant.core.settings import SamplerSettings
from assistant.engine.generate import PrefixCache
from assistant.engine.kvcache import MIN_CAPACITY, GrowingLayer, new_cache

STORY = Path(__file__).resolve().parents[2] / "bench" / "data" / "story.txt"


# --- one layer, no model ----------------------------------------------------------------------------------------


def states(tokens: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, 3, tokens, 8, generator=generator), torch.randn(1, 3, tokens, 8, generator=generator)


def test_layer_holds_what_a_plain_layer_holds_across_growth() -> None:
    growing, plain = GrowingLayer(), DynamicLayer()
    for step, tokens in enumerate([100, 1, 200, 1, 1, 300, 5]):  # crosses 256 and 512
        keys, values = states(tokens, step)
        got = growing.update(keys, values)
        wanted = plain.update(keys, values)
        assert torch.equal(got[0], wanted[0]) and torch.equal(got[1], wanted[1])
        assert growing.get_seq_length() == plain.get_seq_length()
    assert growing.get_seq_length() == 608
    assert growing._key_buffer.shape[-2] == 1024, "capacity doubles: 256, 512, 1024"


def test_growth_keeps_earlier_entries_and_does_not_copy_per_token() -> None:
    layer = GrowingLayer()
    first_keys, first_values = states(200, 0)
    layer.update(first_keys, first_values)
    buffer = layer._key_buffer
    assert buffer.shape[-2] == MIN_CAPACITY
    for step in range(MIN_CAPACITY - 200):
        layer.update(*states(1, step + 1))
    assert layer._key_buffer is buffer, "tokens that fit are written in place"
    layer.update(*states(1, 999))  # token 257: the buffer grows
    assert layer._key_buffer is not buffer and layer._key_buffer.shape[-2] == 2 * MIN_CAPACITY
    assert torch.equal(layer.keys[:, :, :200], first_keys) and torch.equal(layer.values[:, :, :200], first_values)
    assert layer.get_seq_length() == MIN_CAPACITY + 1


def test_crop_removes_tokens_from_the_end_and_new_ones_take_their_place() -> None:
    layer = GrowingLayer()
    keys, values = states(50, 0)
    layer.update(keys, values)
    layer.crop(-20)
    assert layer.get_seq_length() == 30 and torch.equal(layer.keys, keys[:, :, :30])
    new_keys, new_values = states(5, 1)
    got_keys, got_values = layer.update(new_keys, new_values)
    assert torch.equal(got_keys, torch.cat([keys[:, :, :30], new_keys], dim=2))
    assert torch.equal(got_values, torch.cat([values[:, :, :30], new_values], dim=2))
    layer.crop(0)
    assert layer.get_seq_length() == 35
    layer.crop(-1000)
    assert layer.get_seq_length() == 0
    with pytest.raises(ValueError, match="negative"):
        layer.crop(3)


def test_crop_before_anything_was_stored_is_harmless() -> None:
    layer = GrowingLayer()
    layer.crop(-4)
    assert layer.get_seq_length() == 0
    keys, values = states(3, 0)
    assert torch.equal(layer.update(keys, values)[0], keys)


def test_reset_cache_starts_empty() -> None:
    layer = GrowingLayer()
    layer.update(*states(10, 0))
    layer.reset()
    assert layer.get_seq_length() == 0
    keys, values = states(2, 1)
    assert torch.equal(layer.update(keys, values)[0], keys)


# --- the real model -----------------------------------------------------------------------------------------------


def cache_argument(model: Any) -> str:
    """transformers 5.2x renamed the forward's cache argument (as the engine does)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def forward(model: Any, ids: torch.Tensor, cache: Any) -> torch.Tensor:
    """The last position's scores, fp32."""
    with torch.inference_mode():
        output = model(input_ids=ids, use_cache=True, **{cache_argument(model): cache})
    return output.logits[:, -1].float()


def greedy(model: Any, ids: torch.Tensor, cache: Any, steps: int) -> tuple[list[int], list[torch.Tensor]]:
    scores = [forward(model, ids, cache)]
    tokens: list[int] = []
    for _ in range(steps):
        tokens.append(int(scores[-1].argmax()))
        scores.append(forward(model, torch.tensor([[tokens[-1]]]), cache))
    return tokens, scores


@pytest.fixture(scope="module")
def story_ids(loaded_model: Any) -> torch.Tensor:
    return loaded_model.tokenizer(STORY.read_text(encoding="utf-8"), return_tensors="pt")["input_ids"]


@pytest.mark.slow
def test_new_cache_uses_growing_layers_for_the_bundled_model(loaded_model: Any) -> None:
    cache = new_cache(loaded_model.model.config)
    assert isinstance(cache, DynamicCache)
    assert len(cache.layers) == loaded_model.model.config.num_hidden_layers
    assert all(type(layer) is GrowingLayer for layer in cache.layers)


@pytest.mark.slow
def test_greedy_text_is_the_same_as_with_transformers_cache(loaded_model: Any) -> None:
    model, tokenizer = loaded_model.model, loaded_model.tokenizer
    ids = tokenizer("The lighthouse keeper climbed the stairs and looked out at the sea.", return_tensors="pt")
    ours, our_scores = greedy(model, ids["input_ids"], new_cache(model.config), 40)
    theirs, their_scores = greedy(model, ids["input_ids"], DynamicCache(config=model.config), 40)
    assert ours == theirs
    assert all(torch.equal(a, b) for a, b in zip(our_scores, their_scores, strict=True))
    text = tokenizer.decode(ours)
    assert len(text.split()) >= 15


@pytest.mark.slow
def test_growth_past_the_first_buffer_keeps_earlier_tokens(loaded_model: Any, story_ids: torch.Tensor) -> None:
    """250 prompt tokens, then one token at a time past 256: the scores match transformers' cache at every step."""
    model = loaded_model.model
    ours, theirs = new_cache(model.config), DynamicCache(config=model.config)
    prompt = story_ids[:, :250]
    assert torch.equal(forward(model, prompt, ours), forward(model, prompt, theirs))
    early_keys = ours.layers[0].keys.clone()
    for position in range(250, 280):
        token = story_ids[:, position : position + 1]
        assert torch.equal(forward(model, token, ours), forward(model, token, theirs)), f"token {position}"
    layer = ours.layers[0]
    assert layer._key_buffer.shape[-2] == 2 * MIN_CAPACITY and ours.get_seq_length() == 280
    assert torch.equal(layer.keys[:, :, :250], early_keys)
    assert torch.equal(layer.keys, theirs.layers[0].keys) and torch.equal(layer.values, theirs.layers[0].values)


@pytest.mark.slow
def test_cropped_cache_continues_like_a_fresh_one(loaded_model: Any, story_ids: torch.Tensor) -> None:
    """What PrefixCache does for a new prompt sharing a prefix: crop (cache.crop(-n)), then run the new tokens."""
    model = loaded_model.model
    shared, old_tail, new_tail = story_ids[:, :60], story_ids[:, 60:90], story_ids[:, 200:212]
    prefix = PrefixCache(model)
    assert prefix.prepare(torch.cat([shared, old_tail], dim=1)[0].tolist()) == 0
    forward(model, shared, prefix.cache)
    forward(model, old_tail, prefix.cache)
    for token in story_ids[0, 300:310]:  # a generated answer after the old prompt
        forward(model, token.view(1, 1), prefix.cache)
    prefix.tokens = torch.cat([shared, old_tail, story_ids[:, 300:310]], dim=1)[0].tolist()

    new_prompt = torch.cat([shared, new_tail], dim=1)[0].tolist()
    assert prefix.prepare(new_prompt) == 60
    assert prefix.cache.get_seq_length() == 60
    reused = forward(model, new_tail, prefix.cache)

    fresh = new_cache(model.config)
    forward(model, shared, fresh)
    expected = forward(model, new_tail, fresh)
    # The same chunks in the same order: the same numbers, to bf16 rounding at most.
    torch.testing.assert_close(reused, expected, rtol=1e-2, atol=1e-2)
    assert int(reused.argmax()) == int(expected.argmax())
    for position in range(212, 217):  # and the answer goes on the same way
        token = story_ids[:, position : position + 1]
        torch.testing.assert_close(
            forward(model, token, prefix.cache), forward(model, token, fresh), rtol=1e-2, atol=1e-2
        )


@pytest.mark.slow
def test_engine_gives_the_same_seeded_text_when_it_reuses_its_cache(engine: Any) -> None:
    """The same prompt twice: the second run reuses all but the prompt's last token, which runs on its own."""
    prompt = Prompt(text="The lighthouse keeper climbed the stairs and looked out at the sea. " * 3 + "Far away")
    settings = SamplerSettings(temperature=0.9, max_new_tokens=30, seed=3)
    engine.reset_cache()
    fresh = engine.stream(prompt, settings)
    fresh_text = fresh.text()
    again = engine.stream(prompt, settings)
    again_text = again.text()
    assert fresh.stats.prefill_tokens == fresh.stats.prompt_tokens
    assert again.stats.prefill_tokens == 1
    assert fresh_text and again_text == fresh_text
    engine.reset_cache()


@pytest.mark.slow
def test_greedy_text_does_not_depend_on_what_the_cache_held_before(loaded_model: Any, session_profile: Path) -> None:
    """With full-precision weights a reused cache changes nothing, even after a different, shorter request.

    Quantized kernels round to bf16, so with int8/int4 the scores of a prompt move by a hair with how earlier
    prompts were split into forward calls, and the text can differ; what they guarantee (the same prompt twice
    gives the same text) is tested above, and the README says so.
    """
    import os

    from assistant.engine.generate import Engine
    from assistant.engine.models import load_model

    previous = os.environ.get("PENWRIGHT_PROFILE")
    os.environ["PENWRIGHT_PROFILE"] = str(session_profile)
    try:
        engine = Engine(load_model(device="cpu", quantize="none"))
    finally:
        if previous is None:
            os.environ.pop("PENWRIGHT_PROFILE", None)
        else:
            os.environ["PENWRIGHT_PROFILE"] = previous
    story = "Once upon a time in a small village, " * 4 + "there lived"
    settings = SamplerSettings(temperature=0, repetition_penalty=1.0, max_new_tokens=40)
    engine.reset_cache()
    try:
        fresh = engine.generate(Prompt(text=story), settings)
        engine.reset_cache()
        engine.generate(Prompt(text=story[: int(len(story) * 0.8)]), settings)  # an earlier, shorter request
        reused = engine.stream(Prompt(text=story), settings)
        reused_text = reused.text()
        assert reused.stats.prefill_tokens < reused.stats.prompt_tokens
        assert reused_text == fresh
    finally:
        engine.reset_cache()


def test_reserve_then_advance_counts_what_a_writer_put_in_the_buffers() -> None:
    """The fast decode step writes keys and values into the buffers itself, then counts them."""
    layer = GrowingLayer()
    template = torch.empty(1, 3, 0, 8)
    layer.reserve(template, template, 1)
    assert layer.filled == 0 and layer.buffers[0].shape == (1, 3, MIN_CAPACITY, 8)
    keys, values = states(MIN_CAPACITY, 1)
    for position in range(MIN_CAPACITY + 1):  # one past the first capacity: the buffers grow, keeping entries
        layer.reserve(template, template, 1)
        key_buffer, value_buffer = layer.buffers
        source = position % MIN_CAPACITY
        key_buffer[:, :, position] = keys[:, :, source]
        value_buffer[:, :, position] = values[:, :, source]
        layer.advance(1)
    assert layer.filled == layer.get_seq_length() == MIN_CAPACITY + 1
    assert layer.buffers[0].shape[-2] == 2 * MIN_CAPACITY
    assert torch.equal(layer.keys[:, :, :MIN_CAPACITY], keys) and torch.equal(layer.values[:, :, -1], values[:, :, 0])
    layer.crop(-1)
    assert layer.filled == MIN_CAPACITY
