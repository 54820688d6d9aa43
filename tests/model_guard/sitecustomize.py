"""Notices every real model load, so that a test which loads the model without the ``slow`` marker fails.

A load is a call of ``load_model`` that returned a model; loads that fail (a missing file, a damaged GGUF, no GPU)
load nothing and are not counted. The hook wraps ``load_model`` in whichever ``assistant`` module defines it, as
that module finishes importing, so it keeps working when the engine's modules are split or renamed.

``tests/conftest.py`` installs the hook in the test process, and puts this folder first on ``PYTHONPATH`` for child
processes (``python -m assistant ...``), where Python imports this file at start-up as its ``sitecustomize``. A
child appends one line per load to the file named by ``PENWRIGHT_TEST_MODEL_LOADS``. Nothing here imports more than
the standard library, so a child's start-up (and what the start-up tests measure) stays the same.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from types import ModuleType

RECORD_VARIABLE = "PENWRIGHT_TEST_MODEL_LOADS"
PACKAGE = "assistant"


def _wrap_load_model(module: ModuleType, on_load: Callable[[str], None]) -> None:
    function = getattr(module, "load_model", None)
    if not callable(function) or getattr(function, "__module__", None) != module.__name__:
        return  # not defined here (a re-export picks up the wrapper from the defining module)
    if getattr(function, "_penwright_guarded", False):
        return

    @functools.wraps(function)
    def load_model(*args: object, **kwargs: object) -> object:
        loaded = function(*args, **kwargs)
        arguments = ", ".join([*map(repr, args), *(f"{key}={value!r}" for key, value in kwargs.items())])
        on_load(f"{module.__name__}.load_model({arguments})")
        return loaded

    load_model._penwright_guarded = True  # type: ignore[attr-defined]
    module.load_model = load_model  # type: ignore[attr-defined]


class _LoadModelFinder:
    """A meta path finder: finds ``assistant.*`` modules through the other finders, and wraps ``load_model`` once a
    module has run. (No ``importlib.abc`` base class: a child's start-up imports nothing it would not import anyway.)
    """

    def __init__(self, on_load: Callable[[str], None]) -> None:
        self.on_load = on_load

    def find_spec(self, name: str, path: object = None, target: object = None) -> object:
        if name != PACKAGE and not name.startswith(PACKAGE + "."):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is not None and hasattr(loader, "exec_module"):
            original = loader.exec_module

            def exec_module(module: ModuleType) -> None:
                original(module)
                _wrap_load_model(module, self.on_load)

            loader.exec_module = exec_module  # type: ignore[method-assign]  # this loader serves this module only
        return spec


def install(on_load: Callable[[str], None]) -> None:
    """Call ``on_load(description)`` after every successful ``load_model`` in this process."""
    if any(isinstance(finder, _LoadModelFinder) for finder in sys.meta_path):
        return
    for name, module in list(sys.modules.items()):
        if module is not None and (name == PACKAGE or name.startswith(PACKAGE + ".")):
            _wrap_load_model(module, on_load)
    sys.meta_path.insert(0, _LoadModelFinder(on_load))


def _append_to_record(description: str) -> None:
    with open(os.environ[RECORD_VARIABLE], "a", encoding="utf-8") as record:
        record.write(f"child {os.getpid()} ({' '.join(sys.argv)[:200]}): {description}\n")


if __name__ == "sitecustomize" and os.environ.get(RECORD_VARIABLE):
    install(_append_to_record)
