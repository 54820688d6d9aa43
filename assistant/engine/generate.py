"""Streaming generation: one engine API for the CLI, the GUI worker and the tests.

``Engine.stream`` returns an iterator of text pieces. It runs in the caller's thread (the GUI's worker thread owns
the model), checks a thread-safe cancel token between tokens, holds back text that might be the start of a stop
string, never yields half a UTF-8 character, and records stats (time to first token, tokens/s, token counts).

The decode loop calls the model directly with a KV cache instead of ``model.generate()`` plus a streamer thread:
cancel then takes effect within one token, exceptions surface in the caller's thread, and no extra thread competes
for the two CPU cores.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from assistant.core.errors import InputError, ModelError
from assistant.core.prompts import Message, Prompt
from assistant.core.settings import SamplerSettings

if TYPE_CHECKING:
    import torch

    from assistant.engine.fastpath import FastDecoder
    from assistant.engine.models import LoadedModel

log = logging.getLogger(__name__)

_END_OF_TURN_TOKENS = (
    "<|im_end|>",
    "<|eot_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|end_of_turn|>",
    "<|endoftext|>",
)
_FALLBACK_USER = "User:"
_FALLBACK_ASSISTANT = "Assistant:"


class CancelToken:
    """Set from any thread (the UI's Stop, Ctrl-C); the generating thread checks it between tokens."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def reset(self) -> None:
        self._event.clear()


@dataclass
class GenerationStats:
    load_s: float = 0.0
    ttft_ms: float = 0.0
    """From the call to the first generated token (the prompt's prefill plus one step)."""
    prompt_tokens: int = 0
    prefill_tokens: int = 0
    """Prompt tokens actually run through the model; the rest came from the previous generation's KV cache."""
    new_tokens: int = 0
    tok_s: float = 0.0
    """Decode speed after the first token."""
    total_s: float = 0.0
    finish_reason: str = ""
    """"eos" (the model ended), "stop" (a stop string), "length" (max_new_tokens), "cancelled"."""
    weights: str = ""
    """How the weights were stored: "int4", "int8" or a dtype such as "float32"."""
    decoding: str = ""
    """How single tokens were decoded: "fast step (TorchScript)", "the model's own forward", ..."""
    notes: str = ""
    """Why something runs slower than it could (a self-check that failed), in sentences; empty when nothing does."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("load_s", "total_s"):
            data[key] = round(data[key], 3)
        data["ttft_ms"] = round(data["ttft_ms"], 1)
        data["tok_s"] = round(data["tok_s"], 2)
        return data


class IncrementalDecoder:
    """Turns a growing list of token ids into text pieces, never splitting a character.

    Decodes a small window (the previous token plus the new ones) so tokenizers that drop a leading space at the
    start of a decode still produce the right text, and waits while the text ends in U+FFFD (half a character).
    """

    def __init__(self, tokenizer: Any, prompt_ids: Sequence[int]) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = list(prompt_ids[-4:])
        self._prefix_offset = 0
        self._read_offset = len(self._ids)

    def push(self, token_id: int) -> str:
        self._ids.append(token_id)
        decode = self._tokenizer.decode
        prefix_text = decode(self._ids[self._prefix_offset : self._read_offset], skip_special_tokens=True)
        new_text = decode(self._ids[self._prefix_offset :], skip_special_tokens=True)
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            piece = new_text[len(prefix_text) :]
            self._prefix_offset = self._read_offset
            self._read_offset = len(self._ids)
            return piece
        return ""


class StopStringFilter:
    """Passes text through until a stop string appears, holding back any tail that could start one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [stop for stop in stops if stop]
        self._pending = ""
        self.stopped = False

    def push(self, piece: str) -> str:
        if self.stopped:
            return ""
        self._pending += piece
        if not self._stops:
            out, self._pending = self._pending, ""
            return out
        cut = min((index for stop in self._stops if (index := self._pending.find(stop)) >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            out, self._pending = self._pending[:cut], ""
            return out
        hold = 0
        for stop in self._stops:
            for length in range(min(len(stop) - 1, len(self._pending)), hold, -1):
                if self._pending.endswith(stop[:length]):
                    hold = length
                    break
        out = self._pending[: len(self._pending) - hold]
        self._pending = self._pending[len(self._pending) - hold :]
        return out

    def flush(self) -> str:
        """Text held back when the generation ends for another reason: it was not a stop string after all."""
        out, self._pending = ("" if self.stopped else self._pending), ""
        return out


@dataclass
class _Measure:
    """The PromptMeasure a task gets from the engine: token counts against the room left for the prompt."""

    engine: Engine
    limit: int
    _cache: dict[object, int] = field(default_factory=dict)

    def count_prompt(self, prompt: Prompt) -> int:
        messages = prompt.messages or ()
        key = (prompt.text, tuple((message["role"], message["content"]) for message in messages))
        if key not in self._cache:
            self._cache[key] = len(self.engine.encode(prompt))
        return self._cache[key]


class TextStream:
    """An iterator of text pieces; ``stats`` is complete once the iteration ends."""

    def __init__(self, pieces: Iterator[str], stats: GenerationStats) -> None:
        self._pieces = pieces
        self.stats = stats

    def __iter__(self) -> Iterator[str]:
        return self._pieces

    def text(self) -> str:
        return "".join(self._pieces)


class PrefixCache:
    """A KV cache and the tokens it holds: a new prompt reuses the longest prefix it shares with them.

    Chat turn N then prefills only the new message, and an inline suggestion after one more typed character only
    that character's tokens. ``tokens`` lists exactly what the cache holds; callers add to it after each forward.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.cache: Any = None
        self.tokens: list[int] = []

    def prepare(self, prompt_ids: Sequence[int]) -> int:
        """Crop the cache to the shared prefix (or start a new one); returns how many prompt tokens it holds."""
        common = 0
        for cached, new in zip(self.tokens, prompt_ids, strict=False):
            if cached != new:
                break
            common += 1
        common = min(common, len(prompt_ids) - 1)  # the last prompt token must run to give the next token's scores
        self.tokens = []  # until the caller's prefill succeeds, the cache holds nothing trustworthy
        if self.cache is None or common <= 0:
            self.cache = _new_cache(self.model)
            return 0
        surplus = self.cache.get_seq_length() - common
        if surplus > 0:
            self.cache.crop(-surplus)  # a negative count removes tokens in both old and new transformers
        return common

    def reset(self) -> None:
        self.cache = None
        self.tokens = []


class Engine:
    """A loaded model plus everything needed to run prompts on it. Use from one thread at a time."""

    def __init__(self, loaded: LoadedModel, fast_decode: bool = True, native_step: bool = True) -> None:
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.model = loaded.model
        self._end_ids = self._find_end_ids()
        # transformers 5.2x renamed the forward argument; older releases only know "past_key_values".
        parameters = inspect.signature(self.model.forward).parameters
        self._cache_argument = "cache" if "cache" in parameters else "past_key_values"
        self.last_stats: GenerationStats | None = None
        # The KV cache of the last generation: the next prompt reuses the longest common prefix (the system
        # prompt, the earlier chat turns, the story so far) and prefills only what is new.
        self._prefix = PrefixCache(self.model)
        # One token at a time through a lean loop instead of transformers' modules: 1.5x the decode speed for the
        # Llama-style models it reproduces exactly (see fastpath.py); None for the rest.
        self._fast: FastDecoder | None = None
        self.fast_step_note = ""
        """Why the fast step is not used although the model is one it covers; empty otherwise."""
        if fast_decode:
            from assistant.engine.fastpath import FastDecoder

            self._fast = FastDecoder.for_model(self.model, native=native_step)
            self._check_fast_step()

    def _check_fast_step(self) -> None:
        """Keep the fast step only while it gives the model's own scores on a probe (also its warm-up)."""
        if self._fast is None:
            return
        try:
            reason = self._fast.verify(self.model)
        except (RuntimeError, MemoryError) as error:  # the model's own forward still works
            reason = f"it failed: {error}"
        if reason:
            self.fast_step_note = f"The fast decode step is off on this CPU, {reason}."
            log.warning("Decoding through the model's forward: %s", self.fast_step_note)
            self._fast = None

    # --- voices --------------------------------------------------------------------------------------------

    @property
    def voice(self) -> str:
        """The voice the model writes in (``assistant.engine.voices``); "" for none."""
        return self.loaded.voice

    def set_voice(self, name: str | None) -> None:
        """Write in the voice ``name`` (None or "" for none) from the next prompt on, without reloading the model.

        The voice's low-rank weights go beside the base model's (quantized or not) and into the fast step; the KV
        cache of earlier prompts is dropped, since it was computed in the other voice. A voice that is missing or
        was learnt on another model raises ModelError and the voice in use stays.
        """
        from assistant.engine.voices import switch_voice

        if (name or "") == self.loaded.voice:
            return
        self.loaded.voice = switch_voice(self.loaded, name or None)
        self._prefix = PrefixCache(self.model)
        if self._fast is not None:
            self._fast.refresh_voice()
            self._check_fast_step()  # checked again with the voice it now adds

    # --- prompts -------------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.loaded.name

    @property
    def context_length(self) -> int:
        return self.loaded.context_length

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def measure(self, max_new_tokens: int) -> _Measure:
        """What tasks fit their prompts against: the context minus the answer's room."""
        return _Measure(self, self.context_length - max_new_tokens)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def render_chat(self, messages: Sequence[Message]) -> str:
        """The model's own chat template; a plain 'User:/Assistant:' transcript when it has none."""
        if self.has_chat_template:
            try:
                return str(
                    self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
                )
            except Exception as error:  # some templates refuse a system role: fold it into the first message
                if messages and messages[0]["role"] == "system" and len(messages) > 1:
                    merged = dict(messages[1])
                    merged["content"] = f"{messages[0]['content']}\n\n{merged['content']}"
                    return self.render_chat([merged, *messages[2:]])
                raise ModelError(f"The model's chat template failed: {error}") from error
        lines: list[str] = []
        for message in messages:
            role, content = message["role"], message["content"]
            if role == "system":
                lines.append(content + "\n")
            elif role == "user":
                lines.append(f"{_FALLBACK_USER} {content}")
            else:
                lines.append(f"{_FALLBACK_ASSISTANT} {content}")
        lines.append(_FALLBACK_ASSISTANT)
        return "\n".join(lines)

    def encode(self, prompt: Prompt) -> list[int]:
        if prompt.messages is not None:
            text = self.render_chat(prompt.messages)
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return list(self.tokenizer(prompt.text or "")["input_ids"])

    def _stops_for(self, prompt: Prompt) -> list[str]:
        stops = list(prompt.stop)
        if prompt.messages is not None and not self.has_chat_template:
            stops.append("\n" + _FALLBACK_USER)
        return stops

    def _find_end_ids(self) -> set[int]:
        ids: set[int] = set()
        for source in (
            self.tokenizer.eos_token_id,
            getattr(self.model.generation_config, "eos_token_id", None),
        ):
            if isinstance(source, int):
                ids.add(source)
            elif isinstance(source, (list, tuple)):
                ids.update(value for value in source if isinstance(value, int))
        vocab = self.tokenizer.get_vocab()
        special = set(getattr(self.tokenizer, "all_special_tokens", []))
        for token in _END_OF_TURN_TOKENS:
            if token in vocab and token in special:
                ids.add(vocab[token])
        return ids

    # --- generation ----------------------------------------------------------------------------------------

    def stream(
        self,
        prompt: Prompt,
        settings: SamplerSettings | None = None,
        cancel: CancelToken | None = None,
    ) -> TextStream:
        settings = settings or SamplerSettings()
        try:
            settings.validate()
        except ValueError as error:
            raise InputError(f"Invalid sampler setting: {error}.") from None
        prompt_ids = self.encode(prompt)
        if not prompt_ids:
            raise InputError("The prompt is empty: there is nothing to continue.")
        if len(prompt_ids) + settings.max_new_tokens > self.context_length:
            raise InputError(
                f"The prompt ({len(prompt_ids):,} tokens) and the answer ({settings.max_new_tokens:,}) "
                f"do not fit in this model's context of {self.context_length:,} tokens."
            )
        stats = GenerationStats(
            load_s=self.loaded.load_seconds,
            prompt_tokens=len(prompt_ids),
            weights=self.loaded.weights,
            decoding=self.decode_path,
            notes=self.notes,
        )
        self.last_stats = stats
        pieces = self._decode(prompt_ids, settings, cancel or CancelToken(), self._stops_for(prompt), stats)
        return TextStream(pieces, stats)

    def generate(
        self, prompt: Prompt, settings: SamplerSettings | None = None, cancel: CancelToken | None = None
    ) -> str:
        return self.stream(prompt, settings, cancel).text()

    def _decode(
        self,
        prompt_ids: list[int],
        settings: SamplerSettings,
        cancel: CancelToken,
        stops: list[str],
        stats: GenerationStats,
    ) -> Iterator[str]:
        import torch

        from assistant.engine.sampling import build_processors, pick_token

        started = time.perf_counter()
        device = self.loaded.input_device
        processors = build_processors(settings)
        seed = settings.seed if settings.seed is not None else int.from_bytes(os.urandom(4), "little")
        generator = torch.Generator(device="cpu").manual_seed(seed)
        decoder = IncrementalDecoder(self.tokenizer, prompt_ids)
        stop_filter = StopStringFilter(stops)
        all_ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)
        reused = self._prefix.prepare(prompt_ids)
        cache = self._prefix.cache
        stats.prefill_tokens = len(prompt_ids) - reused
        first_token_at = 0.0
        finish = "length"
        try:
            with torch.inference_mode():
                if cancel.cancelled:
                    finish = "cancelled"
                    return
                # The prompt's last token runs on its own, as it does when a later prompt reuses this cache: the
                # first token's scores then never depend on how much was cached, so a seed always gives the same
                # text (quantized kernels and attention round differently for one row than for many).
                pending = all_ids[:, reused:]
                if pending.shape[1] > 1:
                    self.next_scores(pending[:, :-1], cache)
                    self._prefix.tokens = list(prompt_ids[:-1])
                logits = self.next_scores(pending[:, -1:], cache)
                self._prefix.tokens = list(prompt_ids)
                for step in range(settings.max_new_tokens):
                    token = pick_token(logits, all_ids, processors, settings, generator)
                    stats.new_tokens = step + 1
                    if step == 0:
                        first_token_at = time.perf_counter()
                        stats.ttft_ms = (first_token_at - started) * 1000
                    if token in self._end_ids:
                        finish = "eos"
                        break
                    piece = stop_filter.push(decoder.push(token))
                    if piece:
                        yield piece
                    if stop_filter.stopped:
                        finish = "stop"
                        break
                    if cancel.cancelled:
                        finish = "cancelled"
                        break
                    if step + 1 == settings.max_new_tokens:
                        break
                    next_ids = torch.tensor([[token]], dtype=torch.long, device=device)
                    all_ids = torch.cat([all_ids, next_ids], dim=1)
                    logits = self.next_scores(next_ids, cache)
                    self._prefix.tokens.append(token)
                    if cancel.cancelled:
                        finish = "cancelled"
                        break
            if finish != "cancelled":
                tail = stop_filter.flush()
                if tail:
                    yield tail
        except (RuntimeError, MemoryError) as error:
            self.reset_cache()  # a forward pass that failed half-way leaves some layers updated
            if "out of memory" in str(error).lower() or isinstance(error, MemoryError):
                raise ModelError(
                    "Not enough memory to generate this answer; try a shorter text or a smaller --max-new-tokens."
                ) from error
            raise
        finally:
            ended = time.perf_counter()
            stats.finish_reason = finish
            stats.total_s = ended - started
            if first_token_at and stats.new_tokens > 1:
                stats.tok_s = (stats.new_tokens - 1) / max(ended - first_token_at, 1e-9)

    def reset_cache(self) -> None:
        """Forget the reusable KV cache (it is rebuilt on the next generation)."""
        self._prefix.reset()

    @property
    def notes(self) -> str:
        """What runs differently from what was asked or from the fastest path, and why, in sentences; or ""."""
        quantization = self.loaded.quantization.note if self.loaded.quantization is not None else ""
        native = self._fast.native_note if self._fast is not None else ""
        native_note = f"The native decode step is off, {native}." if "self-check" in native else ""
        return " ".join(note for note in (quantization, self.fast_step_note, native_note) if note)

    @property
    def decode_path(self) -> str:
        """How single tokens are decoded, for people: the --selftest line and bug reports."""
        if self._fast is None:
            return "the model's own forward" + (" (the fast step failed its self-check)" if self.fast_step_note else "")
        if self._fast.native is not None:
            return "fast step (native int4 kernels)"
        loop = "fast step (TorchScript)" if self._fast.scripted else "fast step (Python)"
        return f"{loop}; native step not used: {self._fast.native_note}" if self._fast.native_note else loop

    @property
    def fast_decode(self) -> bool:
        """Whether single-token steps take the lean loop of fastpath.py rather than the model's forward."""
        return self._fast is not None

    def next_scores(self, input_ids: torch.Tensor, cache: Any) -> torch.Tensor:
        """The scores (fp32, [1, vocab]) for the token after ``input_ids``, which join ``cache``."""
        import torch

        if input_ids.shape == (1, 1) and self._fast is not None and self._fast.accepts(cache):
            return self._fast.step(int(input_ids[0, 0]), cache)
        # Only the last position's scores are needed: an 8k-token prompt would otherwise cost 1.6 GB of them.
        kwargs: dict[str, Any] = {self._cache_argument: cache, "use_cache": True, "logits_to_keep": 1}
        with torch.inference_mode():
            return self.model(input_ids=input_ids, **kwargs).logits[:, -1, :].float()


def _new_cache(model: Any) -> Any:
    from assistant.engine.kvcache import new_cache

    return new_cache(model.config)


ProgressCallback = Callable[[str, float | None], None]
