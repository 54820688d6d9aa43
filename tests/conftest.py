"""Shared test setup: offline, offscreen, an isolated profile per test, and one real model per session."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TQDM_DISABLE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]


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
