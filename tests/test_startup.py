"""Start-up of the command line: what a command imports, and the shortcuts that make importing the libraries fast.

Commands that need no model answer without torch or transformers (they take seconds to import). Commands that load
one import them with the collector paused and transformers' import table read from a cache that must equal the
table transformers builds itself.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from assistant import cli
from assistant.engine import _fingerprint, cached_import_structure

PYTHON = sys.executable
HEAVY = ("torch", "transformers", "PySide6", "numpy", "tokenizers", "accelerate")


def run_python(code: str, env: dict[str, str] | None = None, timeout: int = 300) -> Any:
    """Run ``code`` in a fresh interpreter; it prints one JSON value as its last line, which is returned."""
    result = subprocess.run(
        [PYTHON, "-c", code], capture_output=True, text=True, env=env or dict(os.environ), timeout=timeout, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


LOADED_HEAVY = f"""
import json, sys
print(json.dumps(sorted({{name.split('.')[0] for name in sys.modules}} & set({HEAVY!r}))))
"""


def test_importing_the_cli_and_the_engine_modules_loads_no_heavy_library() -> None:
    modules = ["assistant.cli", "assistant.engine", "assistant.engine.models", "assistant.engine.generate"]
    modules += ["assistant.engine.completion", "assistant.engine.session", "assistant.engine.tasks"]
    modules += ["assistant.engine.devices", "assistant.engine.sampling"]
    modules += ["assistant.engine.sources", "assistant.engine.gguf"]
    code = "".join(f"import {module}\n" for module in modules) + LOADED_HEAVY
    assert run_python(code) == []


@pytest.mark.parametrize(
    "argv",
    [["--version"], ["--help"], ["complete", "--help"], ["generate", "--help"], ["chat", "--help"], ["models"]],
)
def test_commands_that_need_no_model_never_import_torch_or_transformers(argv: list[str], tmp_path: Path) -> None:
    code = f"""
import contextlib, io
from assistant.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    main({argv!r})
{LOADED_HEAVY}"""
    env = dict(os.environ, PENWRIGHT_PROFILE=str(tmp_path / "profile"))
    assert run_python(code, env) == []


def test_a_missing_model_is_refused_before_the_libraries_are_imported(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix.py"
    prefix.write_text("def add(a, b):\n", encoding="utf-8")
    code = f"""
import contextlib, io
from assistant.cli import main
err = io.StringIO()
code = main(["complete", "--mode", "code", "--prefix-file", {str(prefix)!r}, "--model", "/no/such/model.gguf"],
            out=io.StringIO(), err=err)
assert code == 3, (code, err.getvalue())
{LOADED_HEAVY}"""
    assert run_python(code, dict(os.environ, PENWRIGHT_PROFILE=str(tmp_path / "profile"))) == []


def test_the_loading_stage_shows_once_though_both_start_libraries_and_load_model_say_it() -> None:
    err = io.StringIO()
    progress = cli.LoadProgress(err)
    progress(cli.STARTING_LIBRARIES, None)
    progress(cli.STARTING_LIBRARIES, None)
    progress("Loading a model", None)
    assert err.getvalue().splitlines() == [f"penwright: {cli.STARTING_LIBRARIES}", "penwright: Loading a model"]


# --- transformers' import table, cached --------------------------------------------------------------------------

CHECK_TABLE = """
import gc, json, os, sys
import assistant.engine as engine

built = []
served = engine.cached_import_structure

def spy(folder, version, build):
    def counted(path):
        built.append(path)
        return build(path)
    return served(folder, version, counted)

engine.cached_import_structure = spy
seconds = engine.import_libraries()
import transformers.models.llama.modeling_llama
from transformers.utils import import_utils

models = os.path.dirname(transformers.models.__file__)
cached = import_utils.create_import_structure_from_path(models)
scanned = import_utils.create_import_structure_from_path.__wrapped__.__wrapped__(models)  # transformers' own scan
print(json.dumps({
    "equal": cached == scanned,
    "entries": len(scanned),
    "built": len(built),
    "gc_enabled": gc.isenabled(),
    "imported": all(name in sys.modules for name in engine._MODEL_CODE_DEPENDENCIES),
    "cache_files": len(os.listdir(os.path.join(os.environ["PENWRIGHT_PROFILE"], "cache", "transformers-imports"))),
}))
"""


def test_transformers_import_table_from_the_cache_equals_its_own_scan(tmp_path: Path) -> None:
    env = dict(os.environ, PENWRIGHT_PROFILE=str(tmp_path / "profile"))
    cold = run_python(CHECK_TABLE, env)
    assert cold == {"equal": True, "entries": cold["entries"], "built": 1, "gc_enabled": True, "imported": True,
                    "cache_files": 1}  # fmt: skip
    assert cold["entries"] > 100, "transformers ships hundreds of model folders"
    warm = run_python(CHECK_TABLE, env)
    assert warm == cold | {"built": 0}, "the second process reads the table instead of scanning 1,700 files"


def test_the_import_cache_can_be_turned_off(tmp_path: Path) -> None:
    code = """
import json
import assistant.engine
from transformers.utils import import_utils
print(json.dumps(import_utils.create_import_structure_from_path.__module__))
"""
    assert run_python(code, dict(os.environ, PENWRIGHT_PROFILE=str(tmp_path))) == "assistant.engine"
    env = dict(os.environ, PENWRIGHT_PROFILE=str(tmp_path), PENWRIGHT_IMPORT_CACHE="0")
    assert run_python(code, env) == "transformers.utils.import_utils"


def write_package(folder: Path) -> None:
    (folder / "alpha").mkdir(parents=True)
    (folder / "alpha" / "modeling_alpha.py").write_text("__all__ = ['AlphaModel']\n", encoding="utf-8")
    (folder / "beta.py").write_text("__all__ = ['Beta']\n", encoding="utf-8")


def fake_scan(calls: list[str]) -> Any:
    def build(folder: str) -> dict[Any, Any]:
        calls.append(folder)
        names = {path.stem: {line} for path in Path(folder).rglob("*.py") for line in path.read_text().splitlines()}
        return {"alpha": {frozenset({"torch"}): {"modeling_alpha": names["modeling_alpha"]}}, frozenset(): names}

    return build


def test_the_table_is_rebuilt_when_a_file_or_the_version_changes(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("PENWRIGHT_PROFILE", str(tmp_path / "profile"))
    package = tmp_path / "package"
    write_package(package)
    calls: list[str] = []
    build = fake_scan(calls)
    first = cached_import_structure(str(package), "1.0", build)
    assert cached_import_structure(str(package), "1.0", build) == first and len(calls) == 1
    (package / "beta.py").write_text("__all__ = ['Beta', 'Gamma']\n", encoding="utf-8")
    _fingerprint.cache_clear()  # a process fingerprints each folder once; this one changed under it
    changed = cached_import_structure(str(package), "1.0", build)
    assert len(calls) == 2 and changed != first and changed == build(str(package))
    cached_import_structure(str(package), "2.0", build)
    assert len(calls) == 4, "another transformers version scans again"
    tables = list((tmp_path / "profile" / "cache" / "transformers-imports").iterdir())
    assert len(tables) == 1, "only the newest table is kept"
    tables[0].write_text("{not json", encoding="utf-8")
    assert cached_import_structure(str(package), "2.0", build) == build(str(package))


def test_an_unwritable_cache_only_costs_the_scan(tmp_path: Path, monkeypatch: Any) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would go", encoding="utf-8")
    monkeypatch.setenv("PENWRIGHT_PROFILE", str(blocked))
    package = tmp_path / "package"
    write_package(package)
    calls: list[str] = []
    assert cached_import_structure(str(package), "1.0", fake_scan(calls)) == fake_scan([])(str(package))
