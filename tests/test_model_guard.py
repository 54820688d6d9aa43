"""The guard behind the ``slow`` marker: every real model load is noticed, in this process and in child processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.model_guard import sitecustomize as model_guard


def test_a_successful_load_is_reported_and_a_failed_one_is_not() -> None:
    def load_model(path: str, device: str = "auto") -> str:
        if path == "missing":
            raise OSError(path)
        return path

    module = ModuleType("assistant.fake_loading")
    load_model.__module__ = module.__name__
    module.load_model = load_model  # type: ignore[attr-defined]
    seen: list[str] = []
    model_guard._wrap_load_model(module, seen.append)
    model_guard._wrap_load_model(module, seen.append)  # wrapped once only
    assert module.load_model("model.gguf", device="cpu") == "model.gguf"
    with pytest.raises(OSError):
        module.load_model("missing")
    assert seen == ["assistant.fake_loading.load_model('model.gguf', device='cpu')"]


def test_the_test_process_and_its_children_wrap_load_model(tmp_path: Path) -> None:
    from assistant.engine import models

    assert getattr(models.load_model, "_penwright_guarded", False), "conftest installed the hook here"
    code = """
import json, sys
from assistant.engine import models
finders = [type(finder).__name__ for finder in sys.meta_path]
print(json.dumps(["_LoadModelFinder" in finders, getattr(models.load_model, "_penwright_guarded", False)]))
"""
    env = dict(os.environ, PENWRIGHT_PROFILE=str(tmp_path / "profile"))  # PYTHONPATH and the record file from conftest
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert json.loads(result.stdout) == [True, True]
