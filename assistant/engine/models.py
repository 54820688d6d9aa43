"""Loading a model for generation: ``load_model`` and what it returns, ``LoadedModel``.

Where a model comes from is ``assistant.engine.sources``; a GGUF goes through ``assistant.engine.gguf``, which
converts it once and caches the conversion. Loading checks memory first, places the model (``devices``), and on the
CPU quantizes the linear layers (``assistant.engine.quantize``): int4 for a model that was 4-bit already, int8
otherwise, unless the user asks for something else. Every failure becomes a ``ModelError`` a user can act on.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assistant.core.errors import ModelError
from assistant.core.paths import app_dirs
from assistant.engine.devices import Placement, available_ram_bytes, choose_placement
from assistant.engine.gguf import conversion_folder, gguf_file_type, load_gguf
from assistant.engine.sources import ModelSource, resolve_source

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from assistant.engine.quantize import QuantizationReport

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, float | None], None]
"""Called with a short description of the loading stage and a fraction done (None when unknown)."""


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    source: ModelSource
    placement: Placement
    load_seconds: float
    from_conversion_cache: bool = False
    import_seconds: float = 0.0
    """Time spent importing torch and transformers, reported apart from ``load_seconds``."""
    details: dict[str, Any] = field(default_factory=dict)
    quantization: QuantizationReport | None = None
    """How the linear layers were quantized (None: not at all)."""
    voice: str = ""
    """The voice (``assistant.engine.voices``) the model writes in; "" for none."""

    @property
    def weights(self) -> str:
        """ "int8", "int4" or the dtype the weights are kept in."""
        if self.quantization is not None and self.quantization.mode != "none":
            return self.quantization.mode
        return self.placement.dtype_name

    @property
    def name(self) -> str:
        return self.source.display_name

    @property
    def context_length(self) -> int:
        """Tokens the model attends to; the smaller of what the config and the tokenizer claim."""
        config = self.model.config
        candidates = [
            getattr(config, attribute, None)
            for attribute in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
        ]
        known = [value for value in candidates if isinstance(value, int) and value > 0]
        length = min(known) if known else 2048
        tokenizer_limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 10_000_000:
            length = min(length, tokenizer_limit)
        return length

    @property
    def input_device(self) -> Any:
        return self.model.get_input_embeddings().weight.device


def load_model(
    requested: str | os.PathLike[str] | None = None,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    progress: ProgressCallback | None = None,
    quantize: str = "auto",
    voice: str | None = None,
) -> LoadedModel:
    """Load a model for generation, translating every failure into a ModelError a user can act on.

    ``quantize`` is one of ``assistant.engine.quantize.QUANTIZE_CHOICES``; it only changes models on the CPU.
    ``voice`` names a saved voice: its low-rank changes go beside the quantized weights, or into full-precision ones
    (``assistant.engine.voices.switch_voice``); ``Engine.set_voice`` switches it later without reloading.
    """
    report = progress or (lambda _stage, _fraction: None)
    source = resolve_source(requested)
    import_started = time.perf_counter()
    report("Starting the AI libraries", None)
    from assistant.engine import import_libraries

    import_libraries()  # seconds, reported apart from the load; the GC paused and transformers' import table cached

    _import_model_code(source)
    started = time.perf_counter()
    placement = choose_placement(device, dtype)
    from assistant.engine.quantize import check_choice

    check_choice(quantize)
    if voice:
        from assistant.engine.voices import check_voice_early

        check_voice_early(source, voice)  # a missing voice or another model's is said before the weights load
    _check_memory(source, placement)
    report(f"Loading {source.display_name}", None)
    try:
        model, tokenizer, cached = _load(source, placement, trust_remote_code, report)
    except ModelError:
        raise
    except Exception as error:  # transformers, safetensors, gguf and torch raise many kinds
        raise translate_load_error(error, source, placement) from error
    model.eval()
    quantization = _quantize(model, source, placement, quantize, dtype, report_progress=report)
    if quantization.mode != "none" and placement.dtype_name != _model_dtype_name(model):
        placement = replace(placement, dtype_name=_model_dtype_name(model))
    if placement.device == "cpu" and placement.device_map is None:
        from assistant.engine.attention import use_fp32_for_long_prompts

        use_fp32_for_long_prompts(model)  # bf16 models only: their long prompts attend faster in fp32
    loaded = LoadedModel(
        model=model,
        tokenizer=tokenizer,
        source=source,
        placement=placement,
        load_seconds=time.perf_counter() - started,
        from_conversion_cache=cached,
        import_seconds=started - import_started,
        quantization=quantization,
    )
    if voice:
        from assistant.engine.voices import switch_voice

        report(f"Putting the voice '{voice}' into the model", None)
        loaded.voice = switch_voice(loaded, voice)
    report("Model ready", 1.0)
    return loaded


def _quantize(
    model: Any,
    source: ModelSource,
    placement: Placement,
    requested: str,
    dtype: str,
    report_progress: ProgressCallback,
) -> QuantizationReport:
    """Quantize the linear layers; with fast bf16 on this CPU (and no dtype asked for) the rest runs in bf16 too.

    The quantized kernels take bf16 activations, so a bf16 model skips two conversions per layer; measured on the
    2-core reference machine: 59 vs 55 tokens/s for int4, with the same perplexity.
    """
    import torch

    from assistant.engine.quantize import bf16_is_fast, quantize_model, resolve_mode

    requested = (requested or "auto").lower()
    on_cpu = placement.device == "cpu" and placement.device_map is None
    four_bit = on_cpu and requested == "auto" and _is_four_bit(source)
    mode, note = resolve_mode(requested, placement.device, placement.device_map is not None, four_bit)
    if mode != "none":
        report_progress(f"Preparing {mode} weights", None)
    try:
        result = quantize_model(model, mode, cache=_quantized_cache_file(source, model, mode))
    except (RuntimeError, MemoryError) as error:  # an unusual layer shape or no memory left: run unquantized
        log.warning("Could not quantize the model (%s); running it unquantized.", error)
        from assistant.engine.quantize import QuantizationReport

        result = QuantizationReport(mode="none", requested=requested, note="The weights could not be quantized.")
    result.requested = requested
    result.note = result.note or note
    if (
        result.mode != "none"
        and (dtype or "auto") == "auto"
        and bf16_is_fast()
        and not _native_step_ahead(model, result)
    ):
        model.to(torch.bfloat16)
    return result


def _native_step_ahead(model: Any, report: QuantizationReport) -> bool:
    """Whether decoding will take the native int4 step (native.py), which keeps the model in fp32: it decoded faster
    in fp32 than torch's kernels in bf16 (Xeon with AMX, 2 threads: 95-107 vs 68-86 tokens/s)."""
    from assistant.engine import native
    from assistant.engine.fastpath import supports

    return report.mode == "int4" and native.library()[0] is not None and supports(model)


def _quantized_cache_file(source: ModelSource, model: Any, mode: str) -> Path | None:
    """Where this model's quantized weights are cached; None when its weight files cannot be identified."""
    from assistant.engine.quantize import cache_file

    if mode == "none":
        return None
    if source.gguf_file is not None:
        fingerprint = f"gguf:{conversion_folder(source.gguf_file).name}"
    elif source.kind == "folder":
        folder = Path(source.location)
        files = sorted(path for path in folder.iterdir() if path.suffix in {".safetensors", ".bin", ".pt", ".pth"})
        if not files:
            return None
        stamps = ",".join(f"{path.name}:{path.stat().st_size}:{path.stat().st_mtime_ns}" for path in files)
        fingerprint = f"folder:{folder.resolve()}|{stamps}"
    else:
        commit = getattr(model.config, "_commit_hash", None)
        if not commit:
            return None
        fingerprint = f"hub:{source.location}@{commit}"
    return cache_file(fingerprint, mode, app_dirs().quantized)


def _model_dtype_name(model: Any) -> str:
    return str(model.dtype).removeprefix("torch.")


def _is_four_bit(source: ModelSource) -> bool:
    """Whether the source is a GGUF whose weights are mostly 4 bits or fewer (then int4 loses nothing)."""
    from assistant.engine.quantize import AT_MOST_FOUR_BIT_GGUF_TYPES

    if source.gguf_file is None:
        return False
    file_type = gguf_file_type(source.gguf_file)
    return file_type is not None and file_type in AT_MOST_FOUR_BIT_GGUF_TYPES


def _import_model_code(source: ModelSource) -> None:
    """Import the model's architecture and tokenizer modules up front, so they count as imports, not as loading.

    transformers imports them lazily inside ``from_pretrained``; for the bundled model that is about 1.5 s of the
    first load, while reading the cached weights takes a few tenths of a second.
    """
    folder: Path | None = None
    if source.gguf_file is not None:
        folder = conversion_folder(source.gguf_file)
    elif source.kind == "folder":
        folder = Path(source.location)
    if folder is None or not (folder / "config.json").is_file():
        return
    try:
        import importlib

        from transformers import AutoConfig
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

        MODEL_FOR_CAUSAL_LM_MAPPING[type(AutoConfig.from_pretrained(folder, local_files_only=True))]
        importlib.import_module("transformers.tokenization_utils_tokenizers")
    except Exception:  # an unknown architecture or an older transformers: loading will say what is wrong
        return


def _load(
    source: ModelSource, placement: Placement, trust_remote_code: bool, report: ProgressCallback
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, bool]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    common: dict[str, Any] = {"local_files_only": True, "trust_remote_code": trust_remote_code}
    placement_args: dict[str, Any] = {"dtype": placement.dtype}
    if placement.device_map is not None:
        placement_args["device_map"] = placement.device_map
        placement_args["max_memory"] = placement.max_memory

    if source.gguf_file is not None:
        model, tokenizer, cached = load_gguf(source.gguf_file, placement.dtype, common, placement_args, report)
        return _place(model, placement), tokenizer, cached

    location = source.location
    _check_architecture(location, source, common)
    model = AutoModelForCausalLM.from_pretrained(location, **common, **placement_args)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, **common)
    except Exception as error:
        raise ModelError(
            f"{source.display_name} has no usable tokenizer (tokenizer.json or tokenizer.model) beside its weights."
        ) from error
    return _place(model, placement), tokenizer, False


def _check_architecture(location: str, source: ModelSource, common: dict[str, Any]) -> None:
    """Say plainly when a folder holds a model transformers cannot run, or one that does not generate text."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    try:
        config = AutoConfig.from_pretrained(location, **common)
    except (ValueError, KeyError) as error:
        raise ModelError(
            f"{source.display_name} uses a model architecture that this transformers version does not support."
        ) from error
    if getattr(config, "auto_map", None) and common.get("trust_remote_code"):
        return
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise ModelError(
            f"{source.display_name} is a '{config.model_type}' model, which cannot generate text; "
            "choose a text-generation (causal language) model."
        )


def _place(model: PreTrainedModel, placement: Placement) -> PreTrainedModel:
    if placement.device_map is None and placement.device != "cpu":
        model = model.to(placement.device)  # type: ignore[arg-type]
    return model


def _check_memory(source: ModelSource, placement: Placement) -> None:
    """Refuse early, with advice, a model that clearly cannot fit in RAM on the CPU."""
    if placement.device != "cpu":
        return
    size = _source_bytes(source)
    if size is None:
        return
    # GGUF files are quantized (about 4-8 bits a weight); they grow when dequantized.
    factor = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0}[placement.dtype_name]
    needed = size * (factor / 0.6 if source.gguf_file is not None else factor / _stored_bytes_per_weight(source))
    available = available_ram_bytes()
    if needed > available:
        raise ModelError(
            f"Not enough memory to load {source.display_name} as {placement.dtype_name} "
            f"(needs about {needed / 2**30:.1f} GB, {available / 2**30:.1f} GB free); "
            "try --dtype bfloat16, a GPU, or a smaller model."
        )


def _stored_bytes_per_weight(source: ModelSource) -> float:
    try:
        config = json.loads((Path(source.location) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 2.0
    stored = str(config.get("torch_dtype") or config.get("dtype") or "float16")
    return 4.0 if "32" in stored else 2.0


def _source_bytes(source: ModelSource) -> int | None:
    try:
        if source.gguf_file is not None:
            return source.gguf_file.stat().st_size
        if source.kind == "folder":
            return sum(
                path.stat().st_size
                for pattern in ("*.safetensors", "*.bin")
                for path in Path(source.location).glob(pattern)
            )
    except OSError:
        return None
    return None


def translate_load_error(error: BaseException, source: ModelSource, placement: Placement) -> ModelError:
    """One sentence for each way loading fails; the original stays chained for --debug."""
    import torch

    name = source.display_name
    message = str(error)
    lowered = message.lower()
    if isinstance(error, torch.OutOfMemoryError) or any(
        marker in lowered
        for marker in (
            "out of memory",
            "can't allocate memory",
            "not enough memory",
            "cannot allocate memory",
        )
    ):
        smaller = "bfloat16" if placement.dtype_name == "float32" else "a smaller model"
        return ModelError(
            f"Not enough memory to load {name} on {placement.device}; try --dtype {smaller}"
            f"{' or --device cpu' if placement.device != 'cpu' else ''}, or a smaller model."
        )
    if "architecture" in lowered and "not supported" in lowered:
        return ModelError(f"{name} uses a model architecture that this transformers version cannot run: {message}")
    if "unrecognized" in lowered and ("model" in lowered or "configuration" in lowered):
        return ModelError(
            f"{name} is not a text-generation model that transformers knows (its architecture is not supported)."
        )
    if "trust_remote_code" in lowered:
        return ModelError(
            f"{name} needs its own Python code to run; if you trust its author, pass --trust-remote-code."
        )
    if isinstance(error, OSError) and ("no file named" in lowered or "does not appear to have" in lowered):
        return ModelError(f"{name} has no model weights (no .safetensors or .bin file in its folder).")
    return ModelError(f"The model file of {name} is damaged or incomplete and cannot be loaded ({_short(message)}).")


def _short(message: str, limit: int = 160) -> str:
    first = message.strip().splitlines()[0] if message.strip() else "unknown error"
    return first if len(first) <= limit else first[: limit - 1] + "…"
