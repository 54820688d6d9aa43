"""The application-menu entry a user installs from a terminal: where its files go, and that desktops accept them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from assistant.desktop_entry import APP_ID, ICON_SIZES, install_desktop_entry, installed_paths, uninstall_desktop_entry

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
