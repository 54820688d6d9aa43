"""Typed settings shared by the CLI, the GUI and the engine (no Qt, no torch)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


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
