"""Installs Penwright in this user's application menu on Linux: the .desktop entry, AppStream metainfo, icons.

Files go where freedesktop.org desktops look (``$XDG_DATA_HOME``, by default ``~/.local/share``), so Penwright
shows up in the application menu with its icon. No Qt here: this runs from the command line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from assistant.core.resources import resource_root

APP_ID = "io.github.penwright.Penwright"
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def launch_command() -> str:
    """How the desktop should start this installation: the frozen app, or the installed console script."""
    if getattr(sys, "frozen", False):
        return sys.executable
    script = shutil.which("penwright") or str(Path(sys.executable).with_name("penwright"))
    return script


def installed_paths(base: Path | None = None) -> list[Path]:
    root = base or data_home()
    paths = [root / "applications" / f"{APP_ID}.desktop", root / "metainfo" / f"{APP_ID}.metainfo.xml"]
    paths += [root / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png" for size in ICON_SIZES]
    paths.append(root / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg")
    return paths


def install_desktop_entry(base: Path | None = None) -> list[Path]:
    """Install (or refresh) the entry, metainfo and icons; returns the files written."""
    root = base or data_home()
    resources = resource_root()
    desktop_paths = installed_paths(root)
    entry = (resources / "desktop" / f"{APP_ID}.desktop").read_text(encoding="utf-8")
    command = launch_command()
    quoted = f'"{command}"' if " " in command else command
    entry = entry.replace("Exec=penwright", f"Exec={quoted}")
    contents: dict[Path, bytes] = {
        desktop_paths[0]: entry.encode("utf-8"),
        desktop_paths[1]: (resources / "desktop" / f"{APP_ID}.metainfo.xml").read_bytes(),
        desktop_paths[-1]: (resources / "icons" / "penwright.svg").read_bytes(),
    }
    for size, path in zip(ICON_SIZES, desktop_paths[2:-1], strict=True):
        contents[path] = (resources / "icons" / f"penwright-{size}.png").read_bytes()
    for path, data in contents.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    _refresh_caches(root)
    return list(contents)


def uninstall_desktop_entry(base: Path | None = None) -> list[Path]:
    removed = []
    for path in installed_paths(base):
        if path.exists():
            path.unlink()
            removed.append(path)
    _refresh_caches(base or data_home())
    return removed


def _refresh_caches(root: Path) -> None:
    """Tell the desktop about the change where its tools exist; harmless to skip where they do not."""
    for command in (
        ["update-desktop-database", str(root / "applications")],
        ["gtk-update-icon-cache", "-q", "-t", str(root / "icons" / "hicolor")],
    ):
        if shutil.which(command[0]) and Path(command[-1]).exists():
            subprocess.run(command, capture_output=True, check=False)
