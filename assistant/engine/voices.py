"""Learning a writer's voice: a LoRA adapter (PEFT) trained on their texts, and putting it into a loaded model.

A voice is data, never code: ``adapter_model.safetensors``, ``adapter_config.json`` and ``report.json`` in
``app_dirs().data / "voices" / NAME``. Training runs on the base model's full-precision weights (load it with
``load_model(..., quantize="none")``, see :func:`load_for_training`). Using a voice (:func:`switch_voice`, called by
``load_model(..., voice=NAME)`` and ``Engine.set_voice``) puts its low-rank changes beside the loaded model's weights:
quantized layers add them at full precision (the fast decode steps too), full-precision layers get them merged in.
Switching voices reloads nothing but the adapter.

Training reports progress by a plain callback (loss, tokens/s, time left, held-out perplexity) and checks a cancel
token between steps; stopping keeps the best adapter so far (lowest held-out loss). No Qt here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import re
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assistant.core.errors import InputError, ModelError, PenwrightError
from assistant.core.paths import app_dirs
from assistant.core.voice_texts import VoiceTexts, windows

if TYPE_CHECKING:
    from assistant.engine.generate import CancelToken
    from assistant.engine.models import LoadedModel
    from assistant.engine.sources import ModelSource

log = logging.getLogger(__name__)

REPORT_FILE = "report.json"
ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
VOICE_FORMAT = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")


@dataclass(frozen=True)
class TrainingOptions:
    """How a voice is trained, with defaults chosen by measurement on the 2-core reference CPU and the KJV
    (bench/voice_eval.py, bench/voice_sweep.py; held-out perplexity on Exodus, 18.4 for the base model):

    - rank 8 on the attention's q/v projections, learning rate 1e-3, 8 minutes: 13.1 (29% lower), in int4 too;
    - at equal steps (80) the learning rate 5e-4 / 1e-3 / 2e-3 gave 15.1 / 14.2 / 13.6 and rank 4 / 8 / 16 gave
      14.6 / 14.2 / 13.9; over the whole 8 minutes 2e-3 fell behind (13.3 after 558 steps against 13.1 after 270);
    - all seven projections learn more (12.8 at 80 steps, 12.7 in 8 minutes, 31% lower) but a voice on them made the
      native int4 step 0.79x as fast (98.7 against 124.8 tokens/s), while a q/v voice decodes at the same speed
      (1.0x): Penwright keeps q/v, so a voice costs nothing while writing."""

    minutes: float = 8.0
    """Training stops after this many minutes (the held-out checks included), keeping the best adapter; with the
    load, the first measurement and the save, a default run stays under the issue's 10 minutes."""
    epochs: float = 3.0
    """At most this many passes over the training windows."""
    rank: int = 8
    alpha: int | None = None
    """LoRA scale numerator; None: twice the rank."""
    learning_rate: float = 1e-3
    window_tokens: int = 256
    batch_windows: int = 1
    targets: tuple[str, ...] = ("q_proj", "v_proj")
    warmup_steps: int = 8
    evaluations: int = 6
    """How many times the held-out perplexity is measured during training (besides before and after)."""
    max_eval_windows: int = 24
    sample_tokens: int = 32
    """Greedy tokens continued from a held-out paragraph, with and without the voice, kept in the report."""
    seed: int = 0
    max_steps: int | None = None
    """A fixed number of steps (tests, benchmarks); None: from the epochs and the time budget."""

    def check(self) -> None:
        if not 0 < self.minutes <= 24 * 60:
            raise InputError("The time budget must be between a few seconds and 24 hours (--minutes).")
        if not 1 <= self.rank <= 256:
            raise InputError("The LoRA rank must be between 1 and 256 (--rank); 8 is the measured default.")
        if not 0 < self.epochs <= 100:
            raise InputError("Epochs must be above 0 and at most 100 (--epochs).")


@dataclass(frozen=True)
class TrainingProgress:
    step: int
    steps: int
    """Steps planned (re-estimated from the measured speed and the time budget)."""
    loss: float
    """Training loss of this step (nats per token)."""
    tokens_per_s: float
    seconds: float
    seconds_left: float
    held_out_perplexity: float | None = None
    """Set on the steps where it was measured."""
    best_perplexity: float | None = None
    stage: str = "training"
    """"measuring" (held-out perplexity before training), "training", "saving"."""


ProgressCallback = Callable[[TrainingProgress], None]


class TrainingStopped(PenwrightError):
    """Stopped before a single step: there is nothing to keep."""

    exit_code = 130

    def __init__(self, message: str = "Learning the voice was stopped before it began; nothing was saved.") -> None:
        super().__init__(message)


@dataclass
class VoiceReport:
    name: str
    base: dict[str, Any]
    texts: list[dict[str, Any]]
    words: int
    train_words: int
    held_out_words: int
    train_tokens: int
    held_out_tokens: int
    options: dict[str, Any]
    perplexity_before: float
    perplexity_after: float
    steps: int
    best_step: int
    epochs_done: float
    minutes: float
    tokens_per_s: float
    peak_memory_mb: float
    device: str
    stopped: bool = False
    """Stopped (Stop, Ctrl-C) before the planned end; the best adapter so far was kept."""
    samples: dict[str, str] = field(default_factory=dict)
    """A held-out paragraph's opening ("prompt") and its greedy continuation without ("base") and with ("voice")."""
    adapter_sha256: str = ""
    created: str = ""
    format: int = VOICE_FORMAT

    @property
    def improvement(self) -> float:
        """How much lower the held-out perplexity is with the voice (0.3 = 30% lower)."""
        return 1.0 - self.perplexity_after / self.perplexity_before if self.perplexity_before else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VoiceInfo:
    name: str
    folder: Path
    report: dict[str, Any]

    @property
    def adapter_sha256(self) -> str:
        return str(self.report.get("adapter_sha256", ""))

    def describe(self) -> str:
        report = self.report
        before, after = report.get("perplexity_before"), report.get("perplexity_after")
        perplexity = f"perplexity {before:.1f} -> {after:.1f}" if before and after else "perplexity unknown"
        base = report.get("base", {}).get("name", "unknown model")
        return f"{self.name}: {report.get('words', 0):,} words, {perplexity}, on {base}"


# --- where voices live ----------------------------------------------------------------------------------------


def voices_folder() -> Path:
    return app_dirs().data / "voices"


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not _NAME.match(name) or name in (".", ".."):
        raise InputError(
            "A voice name is 1-64 letters, digits, spaces, dots, dashes or underscores, "
            "starting with a letter or a digit."
        )
    return name


def voice_folder(name: str) -> Path:
    return voices_folder() / check_name(name)


def list_voices() -> list[VoiceInfo]:
    """The voices saved under the data folder, by name; damaged folders are skipped (with a log line)."""
    folder = voices_folder()
    if not folder.is_dir():
        return []
    found = []
    for child in sorted(folder.iterdir(), key=lambda path: path.name.lower()):
        if not child.is_dir() or child.name.startswith("."):
            continue
        try:
            found.append(read_voice(child.name))
        except ModelError as error:
            log.warning("%s", error)
    return found


def read_voice(name: str) -> VoiceInfo:
    """A saved voice's report, or ModelError saying what is missing."""
    folder = voice_folder(name)
    if not folder.is_dir():
        known = ", ".join(voice.name for voice in list_voices()) if voices_folder().is_dir() else ""
        raise ModelError(
            f"There is no voice named '{name}'"
            + (f" (saved voices: {known})." if known else "; learn one with 'penwright tune'.")
        )
    missing = [file for file in (ADAPTER_FILE, ADAPTER_CONFIG, REPORT_FILE) if not (folder / file).is_file()]
    if missing:
        raise ModelError(f"The voice '{name}' is incomplete ({', '.join(missing)} missing); learn it again.")
    try:
        report = json.loads((folder / REPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelError(f"The voice '{name}' has a damaged report.json ({error}); learn it again.") from None
    if not isinstance(report, dict):
        raise ModelError(f"The voice '{name}' has a damaged report.json; learn it again.")
    return VoiceInfo(name=folder.name, folder=folder, report=report)


# --- which base model a voice belongs to ----------------------------------------------------------------------


def check_voice_early(source: ModelSource, name: str) -> None:
    """Before the weights load: the voice exists and, when the source's files identify it, was learnt on it."""
    voice = read_voice(name)
    if source.gguf_file is not None or Path(source.location).is_dir():
        check_base(voice, base_identity(source, None))


def base_identity(source: ModelSource, model: Any) -> dict[str, Any]:
    """What a voice records about its base model, and what :func:`apply_voice` compares.

    ``fingerprint`` hashes the weight files' sizes and their first and last 4 MiB (the whole of a small file): it
    tells models apart without reading gigabytes on every load, and does not change when a file is moved. Only the
    fingerprint is compared; the architecture's shape (from ``model``, when given) is there for people.
    """
    files: list[Path] = []
    if source.gguf_file is not None:
        files = [source.gguf_file]
    else:
        folder = Path(source.location)
        if folder.is_dir():
            files = sorted(path for path in folder.iterdir() if path.suffix in {".safetensors", ".bin"})
    digest = hashlib.sha256()
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.suffix}:{size}|".encode())
        with path.open("rb") as handle:
            digest.update(handle.read(4 * 2**20))
            if size > 8 * 2**20:
                handle.seek(size - 4 * 2**20)
                digest.update(handle.read())
    config = model.config if model is not None else None
    shape = {
        key: getattr(config, key, None)
        for key in ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
    }
    if not files and config is not None:
        digest.update(f"hub:{source.location}@{getattr(config, '_commit_hash', '')}".encode())
    return {"name": source.display_name, "kind": source.kind, "fingerprint": digest.hexdigest(), **shape}


def check_base(voice: VoiceInfo, identity: dict[str, Any]) -> None:
    base = voice.report.get("base", {})
    if base.get("fingerprint") != identity.get("fingerprint"):
        raise ModelError(
            f"The voice '{voice.name}' was learnt on {base.get('name', 'another model')}, not on "
            f"{identity.get('name')}; choose that model, or learn the voice again on this one."
        )


# --- using a voice --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LowRank:
    """One layer's part of a voice: its output gains ``up @ (down @ x)`` (LoRA's B·A with the scale folded into B)."""

    down: Any
    """[rank, in_features], fp32 (LoRA's A)."""
    up: Any
    """[out_features, rank], fp32 (LoRA's B times alpha / rank)."""


VOICED_LAYERS = "_penwright_voiced"
"""The model attribute listing the layers the current voice changed, so the next switch can undo them."""
_ORIGINAL_WEIGHT = "_penwright_original_weight"
_PEFT_PREFIX = "base_model.model."


def read_adapter(voice: VoiceInfo) -> dict[str, LowRank]:
    """The voice's low-rank changes by layer name (as ``model.get_submodule`` takes it), read with safetensors.

    Plain LoRA only: the adapters :func:`train_voice` writes (DoRA or other PEFT methods are refused).
    """
    from safetensors.torch import load_file

    try:
        config = json.loads((voice.folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        tensors = load_file(str(voice.folder / ADAPTER_FILE))
    except (OSError, ValueError, RuntimeError) as error:
        raise ModelError(f"The voice '{voice.name}' is damaged ({_first_line(error)}); learn it again.") from None
    if config.get("peft_type", "LORA") != "LORA" or config.get("use_dora"):
        raise ModelError(f"The voice '{voice.name}' is not a LoRA adapter Penwright made; learn it again.")
    rank_pattern, alpha_pattern = config.get("rank_pattern") or {}, config.get("alpha_pattern") or {}
    changes: dict[str, LowRank] = {}
    for key, down in tensors.items():
        if not key.endswith(".lora_A.weight"):
            continue
        name = key.removeprefix(_PEFT_PREFIX).removesuffix(".lora_A.weight")
        up = tensors.get(key.replace(".lora_A.weight", ".lora_B.weight"))
        if up is None or down.dim() != 2 or up.dim() != 2 or up.shape[1] != down.shape[0]:
            raise ModelError(f"The voice '{voice.name}' is damaged (layer {name}); learn it again.")
        rank = int(_pattern_value(rank_pattern, name, config.get("r", down.shape[0])))
        alpha = float(_pattern_value(alpha_pattern, name, config.get("lora_alpha", rank)))
        scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
        changes[name] = LowRank(down=down.float().contiguous(), up=(up.float() * scale).contiguous())
    if not changes:
        raise ModelError(f"The voice '{voice.name}' holds no layers; learn it again.")
    return changes


def _pattern_value(pattern: dict[str, Any], name: str, default: Any) -> Any:
    """PEFT's per-layer rank or alpha: the first pattern key that ends the layer's name."""
    for key, value in pattern.items():
        if name == key or name.endswith("." + key):
            return value
    return default


def switch_voice(loaded: LoadedModel, name: str | None) -> str:
    """Put the voice ``name`` into the loaded model in place of the current one (None: no voice); returns its name.

    Nothing is reloaded from disk but the adapter (a few MB). A quantized layer keeps its weights and adds the voice's
    low-rank product at full precision (int4 rounding would lose a voice merged into the weights: bench/voice_eval.py
    measured 27% lower held-out perplexity merged in int8, 6% in int4); a full-precision layer gets the voice merged
    into its weights (no cost at all while decoding, on a GPU too), its own weights kept in CPU memory for the next
    switch. A voice that is missing, damaged or learnt on another model raises ModelError before anything changes.
    """
    import torch

    from assistant.engine.quantize import QuantizedLinear

    model = loaded.model
    targets: list[tuple[Any, LowRank]] = []
    voice_name = ""
    if name:
        voice = read_voice(name)
        check_base(voice, base_identity(loaded.source, model))
        for layer_name, change in read_adapter(voice).items():
            try:
                module = model.get_submodule(layer_name)
            except AttributeError:
                raise ModelError(f"The voice '{voice.name}' does not fit this model (no layer {layer_name}).") from None
            if not isinstance(module, QuantizedLinear) and type(module) is not torch.nn.Linear:
                raise ModelError(
                    f"The voice '{voice.name}' changes a kind of layer Penwright cannot voice ({layer_name})."
                )
            if change.down.shape[1] != module.in_features or change.up.shape[0] != module.out_features:
                raise ModelError(f"The voice '{voice.name}' does not fit this model (layer {layer_name}'s shape).")
            if isinstance(module, torch.nn.Linear) and module.weight.device.type == "meta":
                raise ModelError("A voice cannot be put into a model whose weights are offloaded to disk.")
            targets.append((module, change))
        voice_name = voice.name
    with torch.no_grad():
        _remove_voice(model)
        for module, change in targets:
            if isinstance(module, QuantizedLinear):
                module.group.set_low_rank(module.member, change.down, change.up)
            else:
                weight = module.weight
                original = getattr(module, _ORIGINAL_WEIGHT, None)
                if original is None:
                    original = weight.detach().to("cpu", copy=True)
                    setattr(module, _ORIGINAL_WEIGHT, original)
                merged = original.to(weight.device, torch.float32) + (change.up @ change.down).to(weight.device)
                weight.copy_(merged.to(weight.dtype))
        setattr(model, VOICED_LAYERS, [module for module, _change in targets])
    return voice_name


def _remove_voice(model: Any) -> None:
    """Undo the current voice: quantized layers drop their low-rank part, merged weights get their own back."""
    from assistant.engine.quantize import QuantizedLinear

    for module in getattr(model, VOICED_LAYERS, []):
        if isinstance(module, QuantizedLinear):
            module.group.set_low_rank(module.member, None, None)
        else:
            original = getattr(module, _ORIGINAL_WEIGHT)
            module.weight.copy_(original.to(module.weight.device))
    setattr(model, VOICED_LAYERS, [])


def adapter_hash(folder: Path) -> str:
    return hashlib.sha256((folder / ADAPTER_FILE).read_bytes()).hexdigest()


# --- training -------------------------------------------------------------------------------------------------


def load_for_training(
    requested: str | None = None, device: str = "auto", progress: Callable[[str, float | None], None] | None = None
) -> LoadedModel:
    """The base model with its full-precision weights (fp32 on the CPU), as training needs them."""
    from assistant.engine.devices import choose_placement
    from assistant.engine.models import load_model

    dtype = "float32" if choose_placement(device, "auto").device == "cpu" else "auto"
    return load_model(requested, device=device, dtype=dtype, quantize="none", progress=progress)


def train_voice(
    loaded: LoadedModel,
    texts: VoiceTexts,
    name: str,
    options: TrainingOptions | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    replace: bool = False,
) -> VoiceReport:
    """Train a LoRA adapter on the texts and save it as the voice ``name``; the loaded model is left as it was.

    Stop (``cancel``) ends training at the next step and saves the best adapter so far.
    """
    import torch

    options = options or TrainingOptions()
    options.check()
    name = check_name(name)
    folder = voice_folder(name)
    if folder.exists() and not replace:
        raise InputError(f"A voice named '{name}' exists already; choose another name, or replace it.")
    if loaded.quantization is not None and loaded.quantization.mode != "none":
        raise ModelError("A voice is learnt on full-precision weights; load the model with quantize='none'.")
    report_progress = progress or (lambda _progress: None)
    tokenizer, model = loaded.tokenizer, loaded.model
    device = loaded.input_device

    def encode(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    length = min(options.window_tokens, loaded.context_length)
    train_windows = windows(texts.train, encode, length)
    eval_windows = windows(texts.held_out, encode, length)[: options.max_eval_windows]
    if not train_windows or not eval_windows:
        raise InputError("These texts give nothing to train on after cleaning; give more of your prose.")
    train_tokens = sum(len(window) for window in train_windows)
    held_out_tokens = sum(len(window) for window in eval_windows)

    from peft import LoraConfig, get_peft_model

    torch.manual_seed(options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    started = time.perf_counter()
    budget = options.minutes * 60.0
    identity = base_identity(loaded.source, model)
    report_progress(TrainingProgress(0, 0, math.nan, 0.0, 0.0, budget, stage="measuring"))
    prompt_ids = _sample_prompt(texts.held_out, encode)
    config = LoraConfig(
        r=options.rank,
        lora_alpha=options.alpha if options.alpha is not None else 2 * options.rank,
        target_modules=list(options.targets),
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    threads: _Threads | None = None
    try:
        threads = _Threads(peft_model, train_windows[0], device) if str(device) == "cpu" else None
        base_sample = _greedy(peft_model, tokenizer, prompt_ids, options.sample_tokens, device)  # LoRA starts at 0
        before = _perplexity(peft_model, eval_windows, device)
        best_loss, best_step = math.log(before), 0
        report_progress(
            TrainingProgress(
                0, 0, math.nan, 0.0, time.perf_counter() - started, budget, before, before, stage="measuring"
            )
        )
        trainable = [parameter for parameter in peft_model.parameters() if parameter.requires_grad]
        best_state = [parameter.detach().clone() for parameter in trainable]
        optimizer = torch.optim.AdamW(trainable, lr=options.learning_rate, weight_decay=0.0)
        per_epoch = max(1, math.ceil(len(train_windows) / options.batch_windows))
        planned = options.max_steps or max(1, int(per_epoch * options.epochs))
        evaluate_every = max(1, planned // max(1, options.evaluations))
        step, seen_tokens, training_seconds, stopped = 0, 0, 0.0, False
        order: list[int] = []
        peft_model.train()
        while step < planned:
            if cancel is not None and cancel.cancelled:
                stopped = True
                break
            elapsed = time.perf_counter() - started
            if options.max_steps is None and elapsed >= budget and step > 0:  # at least one step, however slow
                break
            if len(order) < options.batch_windows:
                order.extend(torch.randperm(len(train_windows), generator=generator).tolist())
            batch = [train_windows[order.pop(0)] for _ in range(options.batch_windows)]
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(options, step, planned)
            if threads is not None:
                threads.before_step(step)
            step_started = time.perf_counter()
            loss = _train_step(peft_model, batch, device)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step_seconds = time.perf_counter() - step_started
            training_seconds += step_seconds
            if threads is not None:
                threads.after_step(step, step_seconds / sum(len(window) for window in batch))
            step += 1
            seen_tokens += sum(len(window) for window in batch)
            elapsed = time.perf_counter() - started
            if options.max_steps is None and step >= 3:  # re-plan from the measured speed
                per_step = elapsed / step
                planned = max(step + 1, min(int(per_epoch * options.epochs), step + int((budget - elapsed) / per_step)))
                evaluate_every = max(1, planned // max(1, options.evaluations))
            held_out: float | None = None
            if step % evaluate_every == 0 or step >= planned or (cancel is not None and cancel.cancelled):
                held_out = _perplexity(peft_model, eval_windows, device)
                peft_model.train()
                if math.log(held_out) < best_loss:
                    best_loss, best_step = math.log(held_out), step
                    best_state = [parameter.detach().clone() for parameter in trainable]
            per_step = elapsed / step
            report_progress(
                TrainingProgress(
                    step=step,
                    steps=planned,
                    loss=loss,
                    tokens_per_s=seen_tokens / training_seconds if training_seconds else 0.0,
                    seconds=elapsed,
                    seconds_left=max(0.0, min(budget - elapsed, (planned - step) * per_step)),
                    held_out_perplexity=held_out,
                    best_perplexity=math.exp(best_loss),
                )
            )
        if step == 0:
            raise TrainingStopped()
        with torch.no_grad():
            for parameter, saved in zip(trainable, best_state, strict=True):
                parameter.copy_(saved)
        peft_model.eval()
        elapsed = time.perf_counter() - started
        report_progress(
            TrainingProgress(
                step, planned, math.nan, 0.0, elapsed, 0.0, best_perplexity=math.exp(best_loss), stage="saving"
            )
        )
        voice_sample = _greedy(peft_model, tokenizer, prompt_ids, options.sample_tokens, device)
        report = VoiceReport(
            name=name,
            base=identity,
            texts=[{"path": str(file.path), "words": file.words, "sha256": file.sha256} for file in texts.files],
            words=texts.words,
            train_words=texts.words - texts.held_out_words,
            held_out_words=texts.held_out_words,
            train_tokens=train_tokens,
            held_out_tokens=held_out_tokens,
            options={key: list(value) if isinstance(value, tuple) else value for key, value in asdict(options).items()},
            perplexity_before=round(before, 4),
            perplexity_after=round(math.exp(best_loss), 4),
            steps=step,
            best_step=best_step,
            epochs_done=round(step * options.batch_windows / len(train_windows), 3),
            minutes=round(elapsed / 60.0, 3),
            tokens_per_s=round(seen_tokens / training_seconds, 1) if training_seconds else 0.0,
            peak_memory_mb=round(peak_memory_mb(device), 1),
            device=str(device),
            stopped=stopped,
            samples={
                "prompt": str(tokenizer.decode(prompt_ids)),
                "base": str(tokenizer.decode(base_sample)),
                "voice": str(tokenizer.decode(voice_sample)),
            },
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        _save(peft_model, report, folder)
        return report
    finally:
        if threads is not None:
            threads.restore()
        peft_model.unload()  # the base model's own layers back, unchanged
        model.eval()


class _Threads:
    """Picks the torch thread count by measuring: on a shared CPU, two OpenMP threads competing with another busy
    process spin at every barrier (measured on the 2-core reference machine under another 2-thread job: 10-26 s a
    step with 2 threads, 1.8 s with 1; alone: 0.95 s with 2). A forward pass with each count chooses before the
    first measurement; then each count gets one training step every ``RECHECK`` steps and the faster per token is
    kept. The caller's count is restored at the end."""

    RECHECK = 40

    def __init__(self, model: Any, window: list[int], device: Any) -> None:
        import torch

        self.original = torch.get_num_threads()
        self.choices = [self.original, 1] if self.original > 1 else [self.original]
        self.timings: dict[int, list[float]] = {}
        self.current = self.original
        self.probing_since = 0
        if len(self.choices) > 1:
            ids = torch.tensor([window[:64]], device=device)
            seconds = {}
            with torch.no_grad():
                for count in self.choices:
                    torch.set_num_threads(count)
                    model(input_ids=ids)
                    probe_started = time.perf_counter()
                    model(input_ids=ids)
                    seconds[count] = time.perf_counter() - probe_started
            self.current = min(seconds, key=lambda count: seconds[count])
            torch.set_num_threads(self.current)

    def before_step(self, step: int) -> None:
        import torch

        if len(self.choices) == 1:
            return
        if step - self.probing_since >= self.RECHECK:
            self.timings.clear()
            self.probing_since = step
        pending = [count for count in self.choices if not self.timings.get(count)]
        wanted = pending[0] if pending else min(self.choices, key=lambda count: min(self.timings[count]))
        if wanted != self.current:
            torch.set_num_threads(wanted)
            self.current = wanted

    def after_step(self, step: int, seconds_per_token: float) -> None:
        if step > 0:  # the first step also warms the allocator up
            self.timings.setdefault(self.current, []).append(seconds_per_token)

    def restore(self) -> None:
        import torch

        torch.set_num_threads(self.original)


def _learning_rate(options: TrainingOptions, step: int, planned: int) -> float:
    warmup = min(1.0, (step + 1) / max(1, options.warmup_steps))
    decay = max(0.1, 1.0 - step / max(1, planned))
    return options.learning_rate * warmup * decay


def _train_step(model: Any, batch: list[list[int]], device: Any) -> float:
    """One step on a batch of windows (padded on the right, padding ignored in the loss); returns the loss."""
    import torch

    width = max(len(window) for window in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, window in enumerate(batch):
        ids[row, : len(window)] = torch.tensor(window)
        labels[row, : len(window)] = torch.tensor(window)
        mask[row, : len(window)] = 1
    output = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device))
    output.loss.backward()
    return float(output.loss.detach())


def perplexity(model: Any, windows_: list[list[int]], device: Any) -> float:
    """Perplexity of the model on token windows (each scored on its own, every token after the first counted)."""
    return _perplexity(model, windows_, device)


def _perplexity(model: Any, windows_: list[list[int]], device: Any) -> float:
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for window in windows_:
            ids = torch.tensor([window], device=device)
            logits = model(input_ids=ids).logits.float()
            losses = torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="sum")
            total += float(losses)
            count += len(window) - 1
    return math.exp(total / max(1, count))


def _sample_prompt(held_out: list[str], encode: Callable[[str], list[int]], tokens: int = 48) -> list[int]:
    """The opening of the longest of the first held-out paragraphs, cut at a word (a token starting a word)."""
    paragraph = max(held_out[:8], key=len)
    ids = encode(paragraph)
    return ids[: min(tokens, max(4, len(ids) // 2))]


def _greedy(model: Any, tokenizer: Any, prompt_ids: list[int], new_tokens: int, device: Any) -> list[int]:
    import torch

    model.eval()
    ids = torch.tensor([prompt_ids], device=device)
    with torch.no_grad():
        output = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        )
    return [int(token) for token in output[0, len(prompt_ids) :]]


def peak_memory_mb(device: Any = "cpu") -> float:
    """The process's peak resident memory (CPU), or the peak GPU memory allocated on a CUDA device."""
    if str(device).startswith("cuda"):
        import torch

        return float(torch.cuda.max_memory_allocated(device)) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _save(peft_model: Any, report: VoiceReport, folder: Path) -> None:
    """Write the adapter and the report into a temporary folder beside the voice's, then put it in place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        peft_model.save_pretrained(str(staging), safe_serialization=True)
        (staging / "README.md").unlink(missing_ok=True)  # PEFT's model-card template says nothing about a voice
        report.adapter_sha256 = adapter_hash(staging)
        (staging / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
        if folder.exists():
            old = folder.with_name(f".{folder.name}-old-{time.time_ns()}")
            folder.rename(old)
            staging.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(folder)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
        raise


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:160] if text else type(error).__name__
