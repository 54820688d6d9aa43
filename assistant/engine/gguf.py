"""GGUF files through transformers, and the conversion cache that makes every load after the first one fast.

transformers reads a GGUF by dequantizing every tensor (about 18 s for the bundled model), so the result is cached
once as safetensors plus config and tokenizer under the user cache folder, keyed by the file's path, size and
mtime. transformers refuses ``save_pretrained`` on a GGUF-loaded model, hence the state dict is saved directly with
a config that has no ``quantization_config``. A marker file written last tells a finished conversion from a
half-written one; it also remembers the GGUF's quantization type, which chooses int4 or int8 on the CPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assistant.core.paths import app_dirs

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from assistant.engine.models import ProgressCallback

log = logging.getLogger(__name__)

CONVERSION_FORMAT = 1
"""Bumped when the layout of a cached conversion changes, so stale caches are rebuilt rather than misread."""
MARKER = "penwright-conversion.json"


def conversion_folder(gguf_file: Path) -> Path:
    """The cache folder for one GGUF file; a changed file (size or mtime) gets a new folder."""
    stat = gguf_file.stat()
    key = hashlib.sha256(f"{gguf_file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{CONVERSION_FORMAT}".encode())
    return app_dirs().conversions / f"{gguf_file.stem}-{key.hexdigest()[:16]}"


def is_complete_conversion(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def gguf_file_type(gguf_file: Path) -> int | None:
    """The GGUF's ``general.file_type`` (its quantization), remembered in the conversion cache's marker."""
    marker_path = conversion_folder(gguf_file) / MARKER
    marker: dict[str, Any] = {}
    try:
        marker = json.loads(marker_path.read_text(encoding="utf-8"))
        if isinstance(marker.get("gguf_file_type"), int):
            return int(marker["gguf_file_type"])
    except (OSError, ValueError):
        marker = {}
    file_type = _read_gguf_file_type(gguf_file)
    if marker and file_type is not None:
        marker["gguf_file_type"] = file_type
        with contextlib.suppress(OSError):
            marker_path.write_text(json.dumps(marker, indent=2), encoding="utf-8")
    return file_type


def _read_gguf_file_type(gguf_file: Path) -> int | None:
    try:
        from gguf import GGUFReader

        field_ = GGUFReader(gguf_file).fields.get("general.file_type")
        return None if field_ is None else int(field_.parts[field_.data[0]][0])
    except Exception:  # a damaged header only costs the automatic choice; loading reports real damage
        return None


def load_gguf(
    gguf_file: Path,
    dtype: torch.dtype,
    common: dict[str, Any],
    placement_args: dict[str, Any],
    report: ProgressCallback,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, bool]:
    """The model and tokenizer of a GGUF, from the conversion cache when it has them (then the flag is True).

    ``common`` and ``placement_args`` are the ``from_pretrained`` arguments of a cached load; a first conversion
    dequantizes to float32 (what is cached) and then casts to ``dtype``. Errors are left to the caller to translate.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = conversion_folder(gguf_file)
    if is_complete_conversion(folder):
        report("Loading the cached conversion", None)
        tokenizer = AutoTokenizer.from_pretrained(folder, **common)
        model = AutoModelForCausalLM.from_pretrained(folder, **common, **placement_args)
        return model, tokenizer, True
    report("Converting the GGUF model (first time only)", None)
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name, **common)
    model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name, **common, dtype="float32")
    report("Saving the conversion for fast loads", None)
    save_conversion(model, tokenizer, gguf_file, folder)
    return model.to(dtype), tokenizer, False  # type: ignore[arg-type]


def save_conversion(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, gguf_file: Path, folder: Path) -> None:
    """Write the dequantized model beside a marker; a half-written folder is never taken for a cache."""
    from safetensors.torch import save_model

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(folder.name + f".partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        save_model(model, str(staging / "model.safetensors"), metadata={"format": "pt"})
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        config["dtype"] = "float32"
        (staging / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        if model.generation_config is not None:
            model.generation_config.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        marker = {
            "format": CONVERSION_FORMAT,
            "source": str(gguf_file),
            "created": time.time(),
            "gguf_file_type": _read_gguf_file_type(gguf_file),
        }
        (staging / MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        # A cache we cannot write only costs speed next time; the loaded model is still fine.
        log.warning("Could not cache the converted model in %s: %s", folder, error)
