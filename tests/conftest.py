"""Shared test setup: offline, offscreen, an isolated profile per test, one real model per session, honest markers.

Markers are applied here, not by hand, so they cannot drift: every test under ``tests/gui`` is ``gui``, and every
test that uses the real model through a fixture (``loaded_model`` and everything built on it: ``engine``,
``real_client``, ...) is ``slow``. A test that loads the model another way (``load_model`` itself, or a child
process such as ``python -m assistant generate``) carries ``@pytest.mark.slow`` by hand, and the guard below fails it
if it does not: ``tests/model_guard`` notices each real load, here and in child processes.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.model_guard import sitecustomize as model_guard

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TQDM_DISABLE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
GUI_TESTS = Path(__file__).resolve().parent / "gui"
REAL_MODEL_FIXTURE = "loaded_model"  # engine, real_client, fp32_model ... all build on it


# --- markers --------------------------------------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if REAL_MODEL_FIXTURE in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
        if GUI_TESTS in item.path.resolve().parents:
            item.add_marker(pytest.mark.gui)


# --- the guard: a test that loads the real model must be marked slow -------------------------------------------


class ModelLoads:
    """Real model loads, in this process and in child processes, attributed to the test that was running."""

    def __init__(self) -> None:
        self.item: pytest.Item | None = None
        self.in_process: list[tuple[str | None, str]] = []
        handle, name = tempfile.mkstemp(prefix="penwright-model-loads-", suffix=".txt")
        os.close(handle)
        self.child_record = Path(name)  # child processes append to it; removed when the session ends
        self.child_offset = 0

    def loaded_here(self, description: str) -> None:
        self.in_process.append((self.item.nodeid if self.item else None, description))

    def start(self, item: pytest.Item) -> None:
        self.item = item
        self.child_offset = self.child_record.stat().st_size

    def of(self, item: pytest.Item) -> list[str]:
        here = [description for nodeid, description in self.in_process if nodeid == item.nodeid]
        with self.child_record.open(encoding="utf-8") as record:
            record.seek(self.child_offset)
            return here + record.read().splitlines()


MODEL_LOADS = ModelLoads()
model_guard.install(MODEL_LOADS.loaded_here)
os.environ[model_guard.RECORD_VARIABLE] = str(MODEL_LOADS.child_record)
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(Path(model_guard.__file__).parent), *filter(None, [os.environ.get("PYTHONPATH")])]
)


def pytest_unconfigure() -> None:
    MODEL_LOADS.child_record.unlink(missing_ok=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    MODEL_LOADS.start(item)  # before the fixtures: a session fixture that loads the model loads it for this test
    try:
        return (yield)
    finally:
        MODEL_LOADS.item = None


@pytest.fixture(autouse=True)
def real_model_loads_need_the_slow_marker(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails (at teardown) a test that loaded the real model, here or in a child process, without being ``slow``."""
    yield
    loads = MODEL_LOADS.of(request.node)
    if loads and request.node.get_closest_marker("slow") is None:
        pytest.fail(
            f"{request.node.nodeid} loaded the real model but is not marked slow; use the loaded_model, engine or "
            "real_client fixture (that marks it) or add @pytest.mark.slow. Loads:\n  " + "\n  ".join(loads),
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def isolated_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own config, data and cache folders; nothing touches the user's real profile."""
    profile = tmp_path / "profile"
    monkeypatch.setenv("PENWRIGHT_PROFILE", str(profile))
    return profile


@pytest.fixture(scope="session")
def session_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A profile shared by the session's model loads, so the GGUF is converted once per test run."""
    return tmp_path_factory.mktemp("session-profile")


@pytest.fixture(scope="session")
def loaded_model(session_profile: Path) -> Iterator[object]:
    from assistant.engine.models import load_model

    previous = os.environ.get("PENWRIGHT_PROFILE")
    os.environ["PENWRIGHT_PROFILE"] = str(session_profile)
    try:
        loaded = load_model(device="cpu")
    finally:
        if previous is None:
            os.environ.pop("PENWRIGHT_PROFILE", None)
        else:
            os.environ["PENWRIGHT_PROFILE"] = previous
    yield loaded


@pytest.fixture(scope="session")
def engine(loaded_model: object) -> object:
    from assistant.engine.generate import Engine

    return Engine(loaded_model)  # type: ignore[arg-type]


@pytest.fixture
def cli_env(session_profile: Path) -> dict[str, str]:
    """Environment for running ``python -m assistant`` in a child process with the session's cached model."""
    env = dict(os.environ)
    env["PENWRIGHT_PROFILE"] = str(session_profile)
    env["PYTHONIOENCODING"] = "utf-8"
    return env


PYTHON = sys.executable
