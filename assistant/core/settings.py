"""Typed settings shared by the CLI, the GUI and the engine (no Qt, no torch)."""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from assistant.core.paths import app_dirs


@dataclass(frozen=True)
class SamplerSettings:
    """How the next token is chosen. ``temperature == 0`` means greedy (always the likeliest token)."""

    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 40
    min_p: float = 0.05
    repetition_penalty: float = 1.1
    max_new_tokens: int = 256
    seed: int | None = None

    def with_changes(self, **changes: Any) -> SamplerSettings:
        """A copy with the given fields replaced; ``None`` values keep the current field."""
        return replace(self, **{key: value for key, value in changes.items() if value is not None})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        """Raise ValueError with a readable reason for settings no sampler can use."""
        if self.temperature < 0:
            raise ValueError("temperature must be 0 or more")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be above 0 and at most 1")
        if self.top_k < 0:
            raise ValueError("top_k must be 0 (off) or more")
        if not 0 <= self.min_p < 1:
            raise ValueError("min_p must be at least 0 and below 1")
        if self.repetition_penalty <= 0:
            raise ValueError("repetition_penalty must be above 0")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")


SETTINGS_VERSION = 1
THEMES = ("system", "light", "dark")
QUANTIZE_CHOICES = ("auto", "none", "int8", "int4")
"""How the model's weights are stored on the CPU: auto picks int4 for a 4-bit GGUF, int8 otherwise."""
MAX_RECENT_FILES = 10
BACKENDS = ("local", "remote")
"""Where the model runs: "local" on this computer, "remote" on an OpenAI-compatible server."""
REMOTE_TIMEOUT_DEFAULT = 120


@dataclass
class AppSettings:
    """Everything the desktop app remembers between runs, stored as JSON in the config folder."""

    model: str = ""
    """"" is the bundled model; otherwise a folder, a .gguf file or a cached model id."""
    device: str = "auto"
    dtype: str = "auto"
    quantize: str = "auto"
    """Weight storage on the CPU, one of QUANTIZE_CHOICES."""
    voice: str = ""
    """A voice learnt with ``penwright tune`` (a folder name under the data folder's voices); "" writes without one."""
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    backend: str = "local"
    """One of BACKENDS."""
    remote_base_url: str = ""
    """The server's OpenAI-compatible API, such as http://localhost:8000/v1. Its API key is never stored here: it
    lives in the system keyring (``core.api_keys``)."""
    remote_model: str = ""
    """"" takes the first model the server lists."""
    remote_timeout_s: int = REMOTE_TIMEOUT_DEFAULT
    """Seconds the server may stay silent before a request is given up with a message."""
    theme: str = "system"
    editor_font_family: str = ""
    """"" uses the system's fixed-width font in the code pane and its general font in the editor."""
    editor_font_size: int = 12
    autosave_seconds: int = 10
    recent_files: list[str] = field(default_factory=list)
    chat_system_prompt: str | None = None
    suggest_in_editor: bool = True
    """Ghost-text suggestions appear by themselves in the prose editor (Ctrl+Space always asks)."""
    suggest_in_code: bool = True
    window_geometry: str = ""

    def add_recent(self, path: str) -> None:
        if path in self.recent_files:
            self.recent_files.remove(path)
        self.recent_files.insert(0, path)
        del self.recent_files[MAX_RECENT_FILES:]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["version"] = SETTINGS_VERSION
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AppSettings:
        """Settings from JSON; unknown keys are ignored and bad values fall back to the defaults."""
        defaults = cls()
        settings = cls()
        for item in fields(cls):
            if item.name not in data or item.name == "sampler":
                continue
            value = data[item.name]
            default = getattr(defaults, item.name)
            if default is None or _same_kind(value, default):
                setattr(settings, item.name, value)
        sampler_data = data.get("sampler")
        if isinstance(sampler_data, dict):
            known = {item.name for item in fields(SamplerSettings)}
            try:
                sampler = SamplerSettings(**{key: value for key, value in sampler_data.items() if key in known})
                sampler.validate()
                settings.sampler = sampler
            except (TypeError, ValueError):
                pass
        if settings.theme not in THEMES:
            settings.theme = defaults.theme
        if settings.quantize not in QUANTIZE_CHOICES:
            settings.quantize = defaults.quantize
        if settings.backend not in BACKENDS:
            settings.backend = defaults.backend
        settings.remote_timeout_s = max(1, min(int(settings.remote_timeout_s), 3600))
        settings.autosave_seconds = max(1, min(int(settings.autosave_seconds), 3600))
        settings.recent_files = [str(path) for path in settings.recent_files][:MAX_RECENT_FILES]
        return settings


def settings_path() -> Path:
    return app_dirs().config / "settings.json"


def load_settings(path: Path | None = None) -> AppSettings:
    """The saved settings, or the defaults when there are none or the file is damaged (it is then kept aside)."""
    path = path or settings_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return AppSettings()
    except (OSError, ValueError):
        with contextlib.suppress(OSError):
            path.replace(path.with_suffix(".damaged.json"))
        return AppSettings()
    return AppSettings.from_dict(data) if isinstance(data, dict) else AppSettings()


def save_settings(settings: AppSettings, path: Path | None = None) -> None:
    from assistant.core.documents import write_text_atomic

    write_text_atomic(path or settings_path(), json.dumps(settings.to_dict(), indent=2))


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    return isinstance(value, type(default))
