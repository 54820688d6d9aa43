"""A KV cache that grows in place instead of being copied at every token.

transformers' ``DynamicLayer`` appends each new token with ``torch.cat``, which copies the whole layer cache: at
2,000 tokens of context that is 60 copies of 1.5 MB per token for the bundled model, and the cost grows with every
token of a long chat. Here each layer keeps a buffer with room to spare (doubling when full) and hands attention
views of its filled part; cropping (for reuse of a shared prompt prefix) only moves the end.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

MIN_CAPACITY = 256


class GrowingLayer(DynamicLayer):  # type: ignore[misc]
    """One layer's keys and values, [batch, heads, tokens, head_dim], in buffers that grow by doubling."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        self._key_buffer: torch.Tensor = key_states.new_empty((*key_states.shape[:2], 0, key_states.shape[3]))
        self._value_buffer: torch.Tensor = value_states.new_empty((*value_states.shape[:2], 0, value_states.shape[3]))
        self._filled = 0
        self._expose()
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        held = self._filled
        total = held + key_states.shape[-2]
        capacity = self._key_buffer.shape[-2]
        if total > capacity:
            self._grow(key_states, value_states, held, max(total, 2 * capacity, MIN_CAPACITY))
        self._key_buffer[:, :, held:total] = key_states
        self._value_buffer[:, :, held:total] = value_states
        self._filled = total
        return self._expose()

    def _grow(self, key_states: torch.Tensor, value_states: torch.Tensor, held: int, capacity: int) -> None:
        keys = key_states.new_empty((*key_states.shape[:2], capacity, key_states.shape[3]))
        values = value_states.new_empty((*value_states.shape[:2], capacity, value_states.shape[3]))
        keys[:, :, :held] = self._key_buffer[:, :, :held]
        values[:, :, :held] = self._value_buffer[:, :, :held]
        self._key_buffer, self._value_buffer = keys, values

    def _expose(self) -> tuple[torch.Tensor, torch.Tensor]:
        keys = self._key_buffer[:, :, : self._filled]
        values = self._value_buffer[:, :, : self._filled]
        self.keys, self.values = keys, values
        return keys, values

    def reserve(self, key_template: torch.Tensor, value_template: torch.Tensor, tokens: int) -> None:
        """Make room for ``tokens`` more entries, for a writer that fills the buffers itself and then calls
        :meth:`advance` (the fast decode step). The templates give the shape and dtype: [batch, heads, 0, dim]."""
        if not self.is_initialized:
            self.lazy_initialization(key_template, value_template)
        total = self._filled + tokens
        capacity = self._key_buffer.shape[-2]
        if total > capacity:
            self._grow(key_template, value_template, self._filled, max(total, 2 * capacity, MIN_CAPACITY))

    @property
    def buffers(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole key and value buffers, filled or not: [batch, heads, capacity, dim]."""
        return self._key_buffer, self._value_buffer

    @property
    def filled(self) -> int:
        return self._filled if self.is_initialized else 0

    def advance(self, tokens: int) -> None:
        """Count ``tokens`` more entries that a writer put into the buffers after :meth:`reserve`."""
        self._filled += tokens
        self._expose()

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes a negative count: the number of tokens to remove from the end")
        if tokens_to_remove == 0 or not self.is_initialized:
            return
        self._filled = max(self._filled - abs(tokens_to_remove), 0)
        self._expose()


def new_cache(config: Any) -> Any:
    """A DynamicCache for ``config`` whose plain layers grow in place; sliding-window and other layers stay."""
    try:
        cache = DynamicCache(config=config)
    except TypeError:  # older transformers
        return DynamicCache()
    layers = getattr(cache, "layers", None)
    if isinstance(layers, list):
        cache.layers = [GrowingLayer() if type(layer) is DynamicLayer else layer for layer in layers]
    if getattr(cache, "layer_class_to_replicate", None) is DynamicLayer:
        cache.layer_class_to_replicate = GrowingLayer
    return cache
