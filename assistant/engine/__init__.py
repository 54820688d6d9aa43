"""The model side of Penwright: finding, loading and running a local transformer. No Qt here.

Importing this package sets the Hugging Face libraries offline before they are imported anywhere, so no code
path can reach the network; torch and transformers themselves are imported lazily, where they are needed.

It also lets transformers start faster. ``import transformers`` builds its lazy-import table by reading every
source file under ``transformers/models`` (about 1,700 files) for their ``__all__``, and it does this twice per
process (once for ``transformers``, once for ``transformers.models``): about 0.5 s of CPU on the 2-core Xeon it was
measured on, more where those files are not in the disk cache. The table depends only on those files, so it is
kept on disk, keyed by the transformers version and the size and mtime of every one of them, and read back instead
(see ``_TransformersImportTable``). The table transformers gets is equal to the one it would build;
``PENWRIGHT_IMPORT_CACHE=0`` turns this off. ``import_libraries`` is the fast way to import them all.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")

import functools  # noqa: E402  (after the environment, which must be set before anything imports the libraries)
import hashlib  # noqa: E402
import importlib.abc  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from importlib.machinery import ModuleSpec  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402

_IMPORT_UTILS = "transformers.utils.import_utils"
_TABLE_FORMAT = 1

# The parts of transformers that the code of every model it ships imports; importing them up front, with the
# collector paused, leaves only the small model file itself for loading to import.
_MODEL_CODE_DEPENDENCIES = (
    "transformers.modeling_utils",
    "transformers.masking_utils",
    "transformers.modeling_layers",
    "transformers.models.auto.modeling_auto",
    "transformers.models.auto.tokenization_auto",
    "transformers.tokenization_utils_tokenizers",
)


def import_libraries(freeze: bool = True) -> float:
    """Import torch, transformers and what every model's code needs from it; return the seconds it took.

    The cyclic garbage collector is paused meanwhile. These imports create about 600,000 objects, and each
    collection they trigger walks all the objects made so far again. With ``freeze`` the objects they made are then
    moved out of the collector's sight (``gc.freeze``): classes, functions and module tables that live as long as
    the process, which the next collections of each generation would otherwise walk once more (three walks of about
    0.2 s each on a Xeon, during loading). The price is that the few thousand objects the imports left as garbage
    cycles (about 11,000, a few MB) are never freed. Importing twice costs nothing, so ``load_model`` may import the
    same modules again.
    """
    import gc
    import importlib
    import time

    started = time.perf_counter()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401

        for name in _MODEL_CODE_DEPENDENCIES:
            try:
                importlib.import_module(name)
            except Exception:  # another transformers version: loading imports what it needs and says what failed
                continue
    finally:
        if freeze:
            gc.freeze()
        if was_enabled:
            gc.enable()
    return time.perf_counter() - started


class _TransformersImportTable(importlib.abc.MetaPathFinder):
    """When ``transformers.utils.import_utils`` loads, serve its scan of ``transformers/models`` from a disk cache.

    Only ``create_import_structure_from_path`` for the ``models`` folder itself is replaced; every other folder,
    and any failure here (an unknown transformers, an unreadable cache, an unwritable folder), goes to the original.
    """

    def __init__(self) -> None:
        self._finding = False

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != _IMPORT_UTILS or self._finding:
            return None
        self._finding = True
        try:
            spec = importlib.util.find_spec(fullname)  # the finders after this one, as the import would have
        except Exception:
            return None
        finally:
            self._finding = False
            if self in sys.meta_path:
                sys.meta_path.remove(self)  # one module, once
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        spec.loader = _PatchingLoader(spec.loader)
        return spec


class _PatchingLoader(importlib.abc.Loader):
    """The module's own loader, followed by the cache wrapped around its scan."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        created: ModuleType | None = self._loader.create_module(spec)
        return created

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        try:
            _wrap_scan(module)
        except Exception:  # never let a start-up shortcut break the import
            return

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename ... for tracebacks and inspect
        return getattr(self._loader, name)


def _wrap_scan(module: ModuleType) -> None:
    original = getattr(module, "create_import_structure_from_path", None)
    version = getattr(sys.modules.get("transformers"), "__version__", None)
    file = getattr(module, "__file__", None)
    if not callable(original) or not isinstance(version, str) or not isinstance(file, str):
        return
    models = os.path.realpath(os.path.join(os.path.dirname(os.path.dirname(file)), "models"))
    if not os.path.isdir(models):
        return

    @functools.cache
    def create_import_structure_from_path(module_path: Any) -> Any:
        folder = str(module_path)
        if not os.path.isdir(folder):
            folder = os.path.dirname(folder)
        if os.path.realpath(folder) == models:  # transformers asks twice, as a Path and by models/__init__.py
            try:
                return cached_import_structure(models, version, original)
            except Exception:
                pass
        return original(module_path)

    create_import_structure_from_path.__doc__ = original.__doc__
    setattr(create_import_structure_from_path, "__wrapped__", original)  # noqa: B010
    setattr(module, "create_import_structure_from_path", create_import_structure_from_path)  # noqa: B010


def cached_import_structure(folder: str, version: str, build: Callable[[str], Any]) -> Any:
    """transformers' import structure of ``folder``, from the disk cache when its files have not changed."""
    from assistant.core.paths import app_dirs

    key = _fingerprint(folder, version)
    cache_folder = app_dirs().cache / "transformers-imports"
    cache_path = cache_folder / f"{key[:32]}.json"
    try:
        stored = json.loads(cache_path.read_text(encoding="utf-8"))
        if stored.get("key") == key:
            return _decode(stored["table"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    structure = build(folder)
    encoded = _encode(structure)
    if _decode(encoded) != structure:  # a shape this code does not know: use the scan, cache nothing
        return structure
    try:
        cache_folder.mkdir(parents=True, exist_ok=True)
        for old in cache_folder.glob("*.json"):  # one table per installed transformers is enough
            if old != cache_path:
                old.unlink(missing_ok=True)
        staging = cache_path.with_name(f"{cache_path.name}.{os.getpid()}.partial")
        staging.write_text(json.dumps({"key": key, "table": encoded}), encoding="utf-8")
        os.replace(staging, cache_path)
    except OSError:
        pass
    return structure


@functools.lru_cache(maxsize=4)
def _fingerprint(folder: str, version: str) -> str:
    """transformers' version, the folder, and the path, size and mtime of every source file the scan may read."""
    stamps: list[str] = []
    pending = [folder]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.name.endswith(".py"):
                    stat = entry.stat()
                    stamps.append(f"{entry.path}|{stat.st_size}|{stat.st_mtime_ns}")
                elif entry.name != "__pycache__" and entry.is_dir():
                    pending.append(entry.path)
    stamps.sort()
    return hashlib.sha256("\n".join([f"{_TABLE_FORMAT}|{version}|{folder}", *stamps]).encode()).hexdigest()


def _encode(node: Any) -> list[Any]:
    """The nested import structure as JSON, keeping key order: a folder by name, a backend set as a sorted list."""
    if not isinstance(node, dict):
        raise TypeError(type(node).__name__)
    entries: list[Any] = []
    for key, value in node.items():
        if isinstance(key, str):
            entries.append(["folder", key, _encode(value)])
        elif isinstance(key, frozenset) and isinstance(value, dict):
            entries.append(["backends", sorted(key), {module: sorted(names) for module, names in value.items()}])
        else:
            raise TypeError(type(key).__name__)
    return entries


def _decode(entries: list[Any]) -> dict[Any, Any]:
    node: dict[Any, Any] = {}
    for kind, key, value in entries:
        if kind == "folder":
            node[key] = _decode(value)
        else:
            node[frozenset(key)] = {module: set(names) for module, names in value.items()}
    return node


if (
    os.environ.get("PENWRIGHT_IMPORT_CACHE", "1") != "0"
    and _IMPORT_UTILS not in sys.modules
    and not any(isinstance(finder, _TransformersImportTable) for finder in sys.meta_path)
):
    sys.meta_path.insert(0, _TransformersImportTable())
