"""Streaming on the real model: reproducible with a seed, stoppable within a token, clean text only."""

from __future__ import annotations

import threading
import time

import pytest

from assistant.core.errors import InputError
from assistant.core.prompts import Prompt
from assistant.core.settings import SamplerSettings
from assistant.engine.generate import CancelToken, IncrementalDecoder, StopStringFilter

STORY = Prompt(text="The lighthouse keeper climbed the stairs and looked out at the sea. ")
GREEDY = SamplerSettings(temperature=0, repetition_penalty=1.0, max_new_tokens=40)


def test_same_seed_gives_the_same_text_and_another_seed_differs(engine) -> None:
    settings = SamplerSettings(temperature=1.0, top_p=1.0, top_k=0, min_p=0.0, max_new_tokens=30, seed=1234)
    first = engine.generate(STORY, settings)
    second = engine.generate(STORY, settings)
    assert first and first == second
    others = {engine.generate(STORY, settings.with_changes(seed=seed)) for seed in (1, 2, 3)}
    assert others - {first}, "different seeds give different stories"


def test_stats_report_counts_and_speed(engine) -> None:
    stream = engine.stream(STORY, GREEDY)
    text = stream.text()
    stats = stream.stats
    assert text
    assert stats.prompt_tokens == len(engine.encode(STORY))
    assert 1 <= stats.new_tokens <= 40
    assert stats.ttft_ms > 0 and stats.tok_s > 0
    assert stats.finish_reason in ("length", "eos")
    assert set(stats.to_dict()) >= {"load_s", "ttft_ms", "prompt_tokens", "new_tokens", "tok_s"}


def test_cancel_after_a_piece_stops_before_the_next_token(engine) -> None:
    cancel = CancelToken()
    stream = engine.stream(STORY, GREEDY.with_changes(max_new_tokens=200), cancel)
    pieces = []
    for piece in stream:
        pieces.append(piece)
        if len(pieces) == 3:
            tokens_at_cancel = stream.stats.new_tokens
            cancel.cancel()
    assert len(pieces) == 3, "no text arrives after Stop"
    assert stream.stats.new_tokens == tokens_at_cancel, "not a single token is generated after Stop"
    assert stream.stats.finish_reason == "cancelled"


def test_cancel_from_another_thread_takes_effect_within_one_token(engine) -> None:
    cancel = CancelToken()
    stream = engine.stream(STORY, GREEDY.with_changes(max_new_tokens=400), cancel)
    under_way = threading.Event()  # set once a few pieces have arrived: Stop comes in the middle of the answer
    cancelled_at: list[float] = []

    def press_stop() -> None:
        if under_way.wait(timeout=60):
            cancelled_at.append(time.perf_counter())
            cancel.cancel()

    stopper = threading.Thread(target=press_stop)
    stopper.start()
    try:
        for count, _piece in enumerate(stream, start=1):
            if count == 3:
                under_way.set()
        ended = time.perf_counter()
    finally:
        under_way.set()
        stopper.join(timeout=60)
    assert cancelled_at, "Stop was pressed while the answer was streaming"
    per_token = 1 / max(stream.stats.tok_s, 1.0)
    assert stream.stats.finish_reason == "cancelled"
    assert ended - cancelled_at[0] < 2 * per_token + 0.05, "the stream ends within about one token of Stop"
    assert stream.stats.new_tokens < 400


def test_stop_string_ends_the_text_and_never_leaks(engine) -> None:
    full = engine.generate(STORY, GREEDY)
    words = full.split()
    assert len(words) > 6
    stop = " " + words[5]  # a word from the middle of what the model writes
    cut = full.index(stop)
    stream = engine.stream(Prompt(text=STORY.text, stop=(stop,)), GREEDY)
    pieces = list(stream)
    text = "".join(pieces)
    assert text == full[:cut]
    assert stop not in text
    assert stream.stats.finish_reason == "stop"


def test_stop_string_filter_holds_back_partial_matches() -> None:
    stop_filter = StopStringFilter(["\nUser:"])
    out = [stop_filter.push(piece) for piece in ["Hello", " there\n", "Us", "er", ": more"]]
    assert out == ["Hello", " there", "", "", ""]
    assert stop_filter.stopped
    false_alarm = StopStringFilter(["\nUser:"])
    assert false_alarm.push("end\nUs") == "end"
    assert false_alarm.push("ually fine") == "\nUsually fine"
    assert false_alarm.flush() == ""
    tail = StopStringFilter(["###"])
    assert tail.push("abc#") == "abc"
    assert tail.flush() == "#", "held text that never became a stop string is delivered at the end"


def test_incremental_decoder_never_yields_half_a_character(engine) -> None:
    text = " Café déjà vu 😀 東京 naïve 🎉!"
    ids = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
    decoder = IncrementalDecoder(engine.tokenizer, engine.tokenizer("Hello", add_special_tokens=False)["input_ids"])
    pieces = [decoder.push(token) for token in ids]
    assert all("\ufffd" not in piece for piece in pieces)
    assert "".join(pieces) == text
    assert "" in pieces, "some emoji span several tokens and wait for their last byte"


def test_prompt_and_answer_too_long_for_the_context_is_refused(engine) -> None:
    huge = Prompt(text="word " * (engine.context_length + 10))
    with pytest.raises(InputError, match="do not fit"):
        engine.stream(huge, GREEDY)


def test_invalid_sampler_settings_are_refused(engine) -> None:
    with pytest.raises(InputError, match="top_p"):
        engine.stream(STORY, SamplerSettings(top_p=0))


def test_chat_prompt_uses_the_models_own_template(engine) -> None:
    rendered = engine.render_chat([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])
    assert "<|im_start|>system\nS<|im_end|>" in rendered
    assert rendered.endswith("<|im_start|>assistant\n")


def test_chat_turn_prefills_only_the_new_message(engine) -> None:
    """Turn N reuses the KV cache of turn N-1: prefill grows with the new message, not with the conversation."""
    from assistant.core.prompts import ChatRequest, build_chat

    settings = SamplerSettings(max_new_tokens=24, seed=4)
    history = [{"role": "user", "content": "Tell me about lighthouses and the people who kept them."}]
    engine.reset_cache()
    for turn in range(3):
        prompt = build_chat(ChatRequest(history), engine.measure(settings.max_new_tokens))
        stream = engine.stream(prompt, settings)
        answer = stream.text()
        if turn == 0:
            assert stream.stats.prefill_tokens == stream.stats.prompt_tokens
        else:
            new_message = engine.count_tokens(history[-1]["content"])
            assert stream.stats.prefill_tokens <= new_message + 30, (turn, stream.stats)
            assert stream.stats.prompt_tokens > 3 * stream.stats.prefill_tokens
        history += [{"role": "assistant", "content": answer}, {"role": "user", "content": f"Why? ({turn})"}]
