"""Where Penwright keeps its files.

platformdirs gives the usual per-user folders. ``PENWRIGHT_PROFILE`` puts all of them under one folder instead,
so tests, portable installs and screenshots run isolated from the user's real profile.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "penwright"


@dataclass(frozen=True)
class AppDirs:
    config: Path
    data: Path
    cache: Path

    @property
    def conversions(self) -> Path:
        """Cached dequantized GGUF models (safetensors, config and tokenizer)."""
        return self.cache / "conversions"

    @property
    def quantized(self) -> Path:
        """Cached int8/int4 weights, so a warm load skips quantizing."""
        return self.cache / "quantized"

    @property
    def prompts(self) -> Path:
        """User overrides of the prompt templates shipped in resources/prompts."""
        return self.config / "prompts"

    @property
    def recovery(self) -> Path:
        return self.data / "recovery"


def app_dirs() -> AppDirs:
    profile = os.environ.get("PENWRIGHT_PROFILE")
    if profile:
        root = Path(profile).expanduser()
        return AppDirs(config=root / "config", data=root / "data", cache=root / "cache")
    return AppDirs(
        config=Path(platformdirs.user_config_dir(APP_NAME)),
        data=Path(platformdirs.user_data_dir(APP_NAME)),
        cache=Path(platformdirs.user_cache_dir(APP_NAME)),
    )
