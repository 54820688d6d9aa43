"""Files shipped in ``resources/`` (installed as the ``assistant.resources`` package)."""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable
from pathlib import Path


def resource_root() -> Traversable:
    """The resources folder, from an installed wheel, an editable install or a source checkout."""
    try:
        return resources.files("assistant.resources")
    except ModuleNotFoundError:  # running from a checkout that was never installed
        return Path(__file__).resolve().parents[2] / "resources"


def read_resource(*parts: str) -> str:
    node = resource_root()
    for part in parts:
        node = node / part
    return node.read_text(encoding="utf-8")
