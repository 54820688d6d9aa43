"""Inline suggestions (ghost text): fill-in-the-middle or prefix prompts, an LRU cache and KV reuse.

Where a suggestion ends is decided by :mod:`assistant.core.completion_rules`, after every token.
One :class:`InlineCompleter` per loaded model serves the GUI and ``penwright complete`` alike. It keeps the KV
cache of the previous prompt and reuses the longest common token prefix, so one more typed character costs a
few tokens of prefill instead of the whole context.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from assistant.core.completion_rules import Cursor, cut
from assistant.core.prompts import InlineRequest as InlineRequest  # it lived here; callers still import it here
from assistant.core.settings import SamplerSettings
from assistant.engine.generate import CancelToken, Engine, IncrementalDecoder, PrefixCache

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class FimFormat:
    """A model family's fill-in-the-middle sentinels, laid out prefix-suffix-middle (PSM)."""

    family: str
    prefix: str
    suffix: str
    middle: str
    stops: tuple[str, ...] = ()


FIM_FORMATS = (
    FimFormat("qwen", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", ("<|fim_pad|>", "<|file_sep|>")),
    FimFormat("starcoder", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", ("<file_sep>", "<fim_pad>")),
    FimFormat("codellama", "▁<PRE>", "▁<SUF>", "▁<MID>", ("▁<EOT>",)),
    FimFormat("deepseek", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", ()),
)  # fmt: skip


@dataclass(frozen=True)
class FimTokens:
    format: FimFormat
    prefix_id: int
    suffix_id: int
    middle_id: int
    stop_ids: frozenset[int]


def detect_fim(tokenizer: Any) -> FimTokens | None:
    """The FIM sentinels of the tokenizer's family, when each is a single token in its vocabulary."""
    vocab = tokenizer.get_vocab()
    for fim in FIM_FORMATS:
        names = (fim.prefix, fim.suffix, fim.middle)
        if all(name in vocab for name in names):
            stop_ids = frozenset(vocab[name] for name in fim.stops if name in vocab)
            return FimTokens(fim, vocab[fim.prefix], vocab[fim.suffix], vocab[fim.middle], stop_ids)
    return None


@dataclass
class InlineResult:
    text: str
    prefill_tokens: int = 0
    """Tokens actually run through the model before the first new token (after KV reuse)."""
    prompt_tokens: int = 0
    reused_tokens: int = 0
    new_tokens: int = 0
    ttft_ms: float = 0.0
    """From the request to the first new token (prefill plus one step)."""
    first_text_ms: float = 0.0
    """From the request to the first visible suggestion text."""
    total_ms: float = 0.0
    from_cache: bool = False
    cancelled: bool = False
    details: dict[str, Any] = field(default_factory=dict)


TRIM_STEP = 128
CHAR_STEP = 512

INLINE_SETTINGS = SamplerSettings(temperature=0.0, repetition_penalty=1.0, max_new_tokens=48)
"""Greedy: a suggestion should be the model's best guess, and the same text gives the same suggestion."""


RERANK_CANDIDATES = 5
"""First tokens tried when a model without FIM tokens fills a line above code: each is finished greedily to the end
of the line and the candidates are ranked with the lines below the cursor. On bench/inline_quality.py's 100 tasks
(scratch run, SmolLM2-135M on 2 shared cores) K=5 gave 14% exact match at about 7.5 s a task and K=10 16% at about
10.7 s: K=5 keeps most of the gain over the plain greedy line (9%) for about two thirds of K=10's latency."""

RERANK_SUFFIX_LINES = 2
"""Non-blank lines below the cursor's line that score a candidate (with the blank lines between them)."""


def rerank_applies(request: InlineRequest, cursor: Cursor, has_fim: bool) -> bool:
    """A single-line infill above code that a prefix-only prompt cannot see: rank candidates with the suffix."""
    if has_fim or request.mode != "code" or cursor.mid_line:
        return False
    return bool(cursor.next_line.strip())


def following_lines(suffix: str, count: int = RERANK_SUFFIX_LINES) -> str:
    """The lines after the cursor's line up to and including the ``count``-th non-blank one."""
    below = suffix.partition("\n")[2]
    lines: list[str] = []
    seen = 0
    for line in below.split("\n"):
        lines.append(line)
        if line.strip():
            seen += 1
            if seen == count:
                break
    return "\n".join(lines)


@dataclass(frozen=True)
class Candidate:
    raw: str
    """The model's text for the rest of the line (no newline)."""
    line_logprob: float
    """Log-probability of the candidate's tokens after the prompt."""
    suffix_logprob: float
    """Log-probability of the newline and the following lines after the candidate."""

    @property
    def score(self) -> float:
        return self.line_logprob + self.suffix_logprob


def best_candidate(candidates: list[Candidate]) -> Candidate | None:
    """The candidate under which the line and the code below it are likeliest (the first on a tie)."""
    best: Candidate | None = None
    for candidate in candidates:
        if best is None or candidate.score > best.score:
            best = candidate
    return best


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def _split_typed_space(prefix: str) -> tuple[str, str]:
    """The prompt's prefix and the space the user typed after a word, which is left out of the prompt.

    BPE vocabularies glue a space to the next word (" arrived"), so a prompt ending in "the " makes the model start
    with an odd token; without the space it writes " arrived" and the typed space is dropped from the suggestion.
    Indentation on an otherwise empty line stays in the prompt: it tells the model which block it is in.
    """
    line = prefix.rsplit("\n", 1)[-1]
    if line.strip() and prefix.endswith(" ") and not prefix.endswith("  "):
        return prefix[:-1], " "
    return prefix, ""


def _visible_suggestion(raw: str, typed_space: str, line_prefix: str) -> str:
    """The model's text as it will appear after the cursor."""
    if typed_space and raw.startswith(typed_space):
        return raw[len(typed_space) :]
    if line_prefix and not line_prefix.strip() and raw.startswith(" ") and not raw.startswith("  "):
        return raw[1:]  # after indentation the model's first word token carries one space of its own
    return raw


class InlineCompleter:
    """Suggestions from one model, with a prompt-prefix KV cache and an LRU of recent answers."""

    def __init__(self, engine: Engine, prefix_tokens: int = 1024, suffix_tokens: int = 256, lru_size: int = 64) -> None:
        self.engine = engine
        self.prefix_tokens = prefix_tokens
        self.suffix_tokens = suffix_tokens
        self.fim = detect_fim(engine.tokenizer)
        self._lru: OrderedDict[tuple[str, str, str, str], str] = OrderedDict()
        self._lru_size = lru_size
        self._prefix = PrefixCache(getattr(engine, "model", None))

    # --- prompts -------------------------------------------------------------------------------------------

    def _encode(self, text: str) -> list[int]:
        return list(self.engine.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _prefix_ids(self, prefix: str) -> list[int]:
        """The newest ``prefix_tokens`` of the prefix, cut in steps of ``TRIM_STEP`` tokens.

        Cutting exactly at the budget would move the start by a token on every keystroke and defeat KV reuse;
        cutting in steps keeps the start put for hundreds of keystrokes.
        """
        # About 6 characters a token at most: a generous cap, starting at a multiple of CHAR_STEP characters.
        start = max(0, len(prefix) - self.prefix_tokens * 6) // CHAR_STEP * CHAR_STEP
        ids = self._encode(prefix[start:])
        excess = len(ids) - self.prefix_tokens
        if excess > 0:
            step = min(TRIM_STEP, max(1, self.prefix_tokens // 4))
            ids = ids[_round_up(excess, step) :]
        return ids

    def prompt_ids(self, request: InlineRequest) -> list[int]:
        prefix_ids = self._prefix_ids(_split_typed_space(request.prefix)[0])
        if request.mode == "code" and self.fim is not None:
            suffix_ids = self._encode(request.suffix[: self.suffix_tokens * 6])[: self.suffix_tokens]
            return [self.fim.prefix_id, *prefix_ids, self.fim.suffix_id, *suffix_ids, self.fim.middle_id]
        bos = self.engine.tokenizer.bos_token_id
        add_bos = bool(getattr(self.engine.tokenizer, "add_bos_token", False)) and bos is not None
        return ([bos] if add_bos else []) + prefix_ids

    # --- suggestions ---------------------------------------------------------------------------------------

    def _lru_key(self, request: InlineRequest) -> tuple[str, str, str, str]:
        return (request.mode, request.pane, request.prefix[-2000:], request.suffix[:500])

    def cached(self, request: InlineRequest) -> str | None:
        key = self._lru_key(request)
        if key in self._lru:
            self._lru.move_to_end(key)
            return self._lru[key]
        return None

    def suggest(
        self,
        request: InlineRequest,
        cancel: CancelToken | None = None,
        settings: SamplerSettings = INLINE_SETTINGS,
        on_text: Callable[[str], None] | None = None,
    ) -> InlineResult:
        """The suggestion for the text around the cursor; ``on_text`` sees it grow while it is written."""
        started = time.perf_counter()
        hit = self.cached(request)
        if hit is not None:
            if on_text is not None and hit:
                on_text(hit)
            return InlineResult(hit, from_cache=True, total_ms=(time.perf_counter() - started) * 1000)
        try:
            result = self._generate(request, cancel or CancelToken(), settings, started, on_text)
        except BaseException:
            self._prefix.reset()  # a forward that failed part-way leaves some layers a token longer than others
            raise
        if not result.cancelled:
            self._lru[self._lru_key(request)] = result.text
            while len(self._lru) > self._lru_size:
                self._lru.popitem(last=False)
        return result

    def _generate(
        self,
        request: InlineRequest,
        cancel: CancelToken,
        settings: SamplerSettings,
        started: float,
        on_text: Callable[[str], None] | None,
    ) -> InlineResult:
        import torch

        from assistant.engine.sampling import build_processors, pick_token

        ids = self.prompt_ids(request)
        result = InlineResult("", prompt_tokens=len(ids))
        if not ids or cancel.cancelled:
            result.cancelled = cancel.cancelled
            return result
        cursor = Cursor.from_text(request.prefix, request.suffix)
        if rerank_applies(request, cursor, self.fim is not None):
            return self._rerank(ids, request, cursor, cancel, settings, started, on_text)
        end_ids = set(self.engine._end_ids) | (set(self.fim.stop_ids) if self.fim else set())
        processors = build_processors(settings)
        generator = torch.Generator(device="cpu").manual_seed(settings.seed or 0)
        device = self.engine.loaded.input_device
        decoder = IncrementalDecoder(self.engine.tokenizer, ids)
        raw = ""
        text = ""
        shown = ""
        typed_space = _split_typed_space(request.prefix)[1]
        stop = False
        with torch.inference_mode():
            logits = self._prefill(ids, result, device)
            history = torch.tensor([ids], dtype=torch.long, device=device)
            result.ttft_ms = (time.perf_counter() - started) * 1000
            for step in range(settings.max_new_tokens):
                token = pick_token(logits, history, processors, settings, generator)
                result.new_tokens = step + 1
                if token in end_ids:
                    break
                piece = decoder.push(token)
                raw += piece
                text = _visible_suggestion(raw, typed_space, cursor.line_prefix)
                verdict = cut(text, cursor, request.mode)
                if verdict.stop:
                    text, stop = verdict.text, True
                    break
                if piece and on_text is not None and verdict.text.strip() and verdict.text != shown:
                    if not result.first_text_ms:
                        result.first_text_ms = (time.perf_counter() - started) * 1000
                    shown = verdict.text
                    on_text(shown)
                if cancel.cancelled:
                    result.cancelled = True
                    return result
                next_ids = torch.tensor([[token]], dtype=torch.long, device=device)
                history = torch.cat([history, next_ids], dim=1)
                logits = self._step(next_ids, token)
        result.text = text if stop else cut(text, cursor, request.mode, final=True).text
        if on_text is not None and result.text != shown:
            on_text(result.text)
        if result.text and not result.first_text_ms:
            result.first_text_ms = (time.perf_counter() - started) * 1000
        result.total_ms = (time.perf_counter() - started) * 1000
        return result

    def _rerank(
        self,
        ids: list[int],
        request: InlineRequest,
        cursor: Cursor,
        cancel: CancelToken,
        settings: SamplerSettings,
        started: float,
        on_text: Callable[[str], None] | None,
    ) -> InlineResult:
        """One prefill, ``RERANK_CANDIDATES`` greedy lines from the cached prefix, the best with the suffix wins."""
        import torch

        result = InlineResult("", prompt_tokens=len(ids))
        tokenizer = self.engine.tokenizer
        end_ids = set(self.engine._end_ids)
        special = set(getattr(tokenizer, "all_special_ids", ()) or ())
        device = self.engine.loaded.input_device
        typed_space = _split_typed_space(request.prefix)[1]
        follow = following_lines(request.suffix)
        candidates: list[Candidate] = []
        with torch.inference_mode():
            first = self._prefill(ids, result, device)[0]
            result.ttft_ms = (time.perf_counter() - started) * 1000
            first_logp = torch.log_softmax(first.float(), -1)
            starts: list[int] = []
            for token in torch.argsort(first, descending=True)[:400].tolist():
                piece = str(tokenizer.decode([token]))
                if token in end_ids or token in special or "\n" in piece or not piece.strip():
                    continue
                starts.append(token)
                if len(starts) == RERANK_CANDIDATES:
                    break
            for token in starts:
                if cancel.cancelled:
                    break
                self._crop(len(ids))
                candidate = self._candidate(ids, token, float(first_logp[token]), follow, settings, cancel, device)
                result.new_tokens += 1
                if candidate is not None:
                    candidates.append(candidate)
            self._crop(len(ids))
        if cancel.cancelled:
            result.cancelled = True
            return result
        best = best_candidate(candidates)
        text = _visible_suggestion(best.raw, typed_space, cursor.line_prefix) if best else ""
        verdict = cut(text, cursor, request.mode)
        result.text = verdict.text if verdict.stop else cut(text, cursor, request.mode, final=True).text
        result.details = {"candidates": [(c.raw, round(c.score, 2)) for c in candidates]}
        if on_text is not None and result.text:
            on_text(result.text)
        if result.text:
            result.first_text_ms = (time.perf_counter() - started) * 1000
        result.total_ms = (time.perf_counter() - started) * 1000
        return result

    def _candidate(
        self,
        ids: list[int],
        token: int,
        logprob: float,
        follow: str,
        settings: SamplerSettings,
        cancel: CancelToken,
        device: Any,
    ) -> Candidate | None:
        """``token`` finished greedily to the end of its line, scored with the ``follow`` lines after it."""
        import torch

        decoder = IncrementalDecoder(self.engine.tokenizer, ids)
        raw = decoder.push(token)
        rest = ""
        scores = self._step(torch.tensor([[token]], dtype=torch.long, device=device), token)
        for _ in range(settings.max_new_tokens - 1):
            if cancel.cancelled:
                return None
            logp = torch.log_softmax(scores[0].float(), -1)
            nxt = int(torch.argmax(logp))
            if nxt in self.engine._end_ids:
                break
            piece = decoder.push(nxt)
            if "\n" in piece:
                rest = piece.split("\n", 1)[0]  # the line's end that came glued to the newline ("):\n")
                break
            logprob += float(logp[nxt])
            raw += piece
            scores = self._step(torch.tensor([[nxt]], dtype=torch.long, device=device), nxt)
        tail = self._encode(rest + "\n" + follow)
        if not tail:
            return Candidate(raw + rest, logprob, 0.0)
        suffix_logprob = float(torch.log_softmax(scores[0].float(), -1)[tail[0]])
        if len(tail) > 1:
            kwargs = {self.engine._cache_argument: self._prefix.cache, "use_cache": True}
            logits = self.engine.model(input_ids=torch.tensor([tail[:-1]], device=device), **kwargs).logits[0]
            picked = torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(tail[1:], device=device)[:, None])
            suffix_logprob += float(picked.sum())
            self._prefix.tokens.extend(tail[:-1])
        return Candidate(raw + rest, logprob, suffix_logprob)

    def _crop(self, length: int) -> None:
        """Drop what the cache holds past the first ``length`` tokens (the candidates written after the prompt)."""
        extra = self._prefix.cache.get_seq_length() - length
        if extra > 0:
            self._prefix.cache.crop(-extra)
        del self._prefix.tokens[length:]

    def _prefill(self, ids: list[int], result: InlineResult, device: Any) -> torch.Tensor:
        """Run only the tokens after the longest prefix shared with the cached prompt."""
        import torch

        common = self._prefix.prepare(ids)
        result.reused_tokens = common
        result.prefill_tokens = len(ids) - common
        fresh = torch.tensor([ids[common:]], dtype=torch.long, device=device)
        scores = self.engine.next_scores(fresh, self._prefix.cache)
        self._prefix.tokens = list(ids)
        return scores

    def _step(self, next_ids: torch.Tensor, token: int) -> torch.Tensor:
        scores = self.engine.next_scores(next_ids, self._prefix.cache)
        self._prefix.tokens.append(token)
        return scores

    def reset(self) -> None:
        """Forget the KV cache (another task used the model) and the suggestions seen so far."""
        self._prefix.reset()
        self._lru.clear()
