"""Files shipped in ``resources/`` (installed as the ``assistant.resources`` package)."""

from __future__ import annotations

import sys
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from assistant.core.errors import PenwrightError


def resource_root() -> Traversable:
    """The resources folder, from an installed wheel, a frozen bundle, an editable install or a checkout."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle is not None and (Path(bundle) / "assistant" / "resources").is_dir():
        return Path(bundle) / "assistant" / "resources"
    try:
        root = resources.files("assistant.resources")
    except ModuleNotFoundError:
        root = None
    if root is not None and root.joinpath("prompts").is_dir():
        return root
    return Path(__file__).resolve().parents[2] / "resources"  # a checkout that was never installed


def read_resource(*parts: str) -> str:
    node = resource_root()
    for part in parts:
        node = node / part
    try:
        return node.read_text(encoding="utf-8")
    except OSError:
        raise PenwrightError(
            f"Penwright's file resources/{'/'.join(parts)} is missing from this installation; reinstall Penwright."
        ) from None
