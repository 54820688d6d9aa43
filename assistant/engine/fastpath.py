"""A lean decode step for Llama-style models: one token through every layer without transformers' module calls.

Why: a decode step of the bundled model through transformers' modules took 15.3 ms on the 2-core reference machine,
of which the matrix kernels are about 6 ms; the rest is per-module Python (argument handling, masks, output
objects, cache bookkeeping) repeated over 30 layers. The same arithmetic written as one loop takes 10.1 ms and gives
bit-identical scores (tested against the model's own forward). That is the difference between 0.7x and parity with
llama.cpp's decode speed.

Only single-token steps take this path (decoding, and the prompt's last token); prompts still run through the
model's forward, where the matrix products dominate. It covers the families whose decoder layer is the plain Llama
one (Llama, Mistral, Qwen2: RMSNorm, rotary positions, grouped-query attention, a SiLU-gated MLP) on one CPU device;
anything else (sliding windows, norms on q/k, adapters, offloading hooks, GPUs) keeps the model's own forward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as functional

from assistant.engine.kvcache import GrowingLayer
from assistant.engine.quantize import QuantizedLinear

SUPPORTED_LAYERS = {
    "llama": ("LlamaDecoderLayer", "LlamaRMSNorm"),
    "mistral": ("MistralDecoderLayer", "MistralRMSNorm"),
    "qwen2": ("Qwen2DecoderLayer", "Qwen2RMSNorm"),
}
"""model_type -> the decoder layer and norm classes whose arithmetic :class:`FastDecoder` reproduces."""

Projection = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class _Layer:
    input_norm: torch.Tensor
    post_norm: torch.Tensor
    qkv: Projection
    out: Projection
    gate_up: Projection
    down: Projection


class FastDecoder:
    """Runs one token at a time through a Llama-style model, writing its keys and values into a growing KV cache.

    Build it with :meth:`for_model`, which returns None for models it does not reproduce exactly.
    """

    def __init__(self, model: Any) -> None:
        config = model.config
        inner = model.model
        first = inner.layers[0]
        self._rotary = inner.rotary_emb
        self._embedding = inner.embed_tokens.weight
        self._final_norm = inner.norm.weight
        self._eps = float(first.input_layernorm.variance_epsilon)
        self.heads = int(config.num_attention_heads)
        self.kv_heads = int(config.num_key_value_heads)
        self.head_dim = int(first.self_attn.head_dim)
        self._scaling = float(first.self_attn.scaling)
        self._query_width = self.heads * self.head_dim
        self._key_width = self.kv_heads * self.head_dim
        self._intermediate = int(first.mlp.gate_proj.out_features)
        self._half = self.head_dim // 2
        self._layers = [
            _Layer(
                input_norm=layer.input_layernorm.weight,
                post_norm=layer.post_attention_layernorm.weight,
                qkv=_projection([layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj]),
                out=_projection([layer.self_attn.o_proj]),
                gate_up=_projection([layer.mlp.gate_proj, layer.mlp.up_proj]),
                down=_projection([layer.mlp.down_proj]),
            )
            for layer in inner.layers
        ]
        self._head = _projection([model.lm_head])
        self._positions = torch.zeros((1, 1), dtype=torch.long)

    @classmethod
    def for_model(cls, model: Any) -> FastDecoder | None:
        """A fast decoder for ``model``, or None when its layers are not the plain Llama ones on one CPU device."""
        if not supports(model):
            return None
        return cls(model)

    def accepts(self, cache: Any) -> bool:
        """Whether this cache is one the step can extend (one growing layer per model layer)."""
        layers = getattr(cache, "layers", None)
        return (
            isinstance(layers, list)
            and len(layers) == len(self._layers)
            and all(type(layer) is GrowingLayer for layer in layers)
        )

    def step(self, token: int, cache: Any) -> torch.Tensor:
        """The scores for the token after ``token`` (fp32, [1, vocab]); ``token`` joins the cache."""
        position = int(cache.get_seq_length())
        hidden = self._embedding[token].view(1, -1)
        self._positions.fill_(position)
        cos, sin = self._rotary(hidden, self._positions)
        cos = cos.view(1, 1, self.head_dim)
        sin = sin.view(1, 1, self.head_dim)
        heads, kv_heads, head_dim, half = self.heads, self.kv_heads, self.head_dim, self._half
        rotated_width = self._query_width + self._key_width
        for layer, layer_cache in zip(self._layers, cache.layers, strict=True):
            qkv = layer.qkv(self._norm(hidden, layer.input_norm))
            # Rotary positions for queries and keys in one go: x * cos + rotate_half(x) * sin.
            query_key = qkv[:, :rotated_width].view(1, heads + kv_heads, head_dim)
            turned = torch.cat((-query_key[..., half:], query_key[..., :half]), dim=-1)
            query_key = query_key * cos + turned * sin
            query = query_key[:, :heads].view(1, heads, 1, head_dim)
            key = query_key[:, heads:].view(1, kv_heads, 1, head_dim)
            value = qkv[:, rotated_width:].view(1, kv_heads, 1, head_dim)
            keys, values = layer_cache.update(key, value)
            attended = functional.scaled_dot_product_attention(
                query, keys, values, scale=self._scaling, enable_gqa=heads != kv_heads
            )
            hidden = hidden + layer.out(attended.view(1, self._query_width))
            gate_up = layer.gate_up(self._norm(hidden, layer.post_norm))
            hidden = hidden + layer.down(
                functional.silu(gate_up[:, : self._intermediate]) * gate_up[:, self._intermediate :]
            )
        return self._head(self._norm(hidden, self._final_norm)).float()

    def _norm(self, hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """RMSNorm exactly as transformers' Llama computes it: in fp32, scaled by the weight in the model's dtype."""
        as_float = hidden.float()
        variance = as_float.pow(2).mean(-1, keepdim=True)
        return weight * (as_float * torch.rsqrt(variance + self._eps)).to(hidden.dtype)


def supports(model: Any) -> bool:
    """Whether :class:`FastDecoder` reproduces this model's forward pass."""
    config = getattr(model, "config", None)
    classes = SUPPORTED_LAYERS.get(getattr(config, "model_type", ""))
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if classes is None or inner is None or not layers or getattr(model, "training", True):
        return False
    if getattr(config, "hidden_act", "") != "silu":
        return False
    if getattr(config, "sliding_window", None) is not None and getattr(config, "use_sliding_window", True):
        return False  # Qwen2 names a window it does not use unless use_sliding_window is set
    if getattr(config, "pretraining_tp", 1) not in (None, 1):
        return False
    decoder_class, norm_class = classes
    parameters = list(model.parameters())
    if not parameters or any(parameter.device.type != "cpu" for parameter in parameters):
        return False
    if any(hasattr(module, "_hf_hook") for module in model.modules()):  # accelerate offloading or device maps
        return False
    if getattr(model, "peft_config", None):
        return False
    for layer in layers:
        if type(layer).__name__ != decoder_class:
            return False
        norms = (layer.input_layernorm, layer.post_attention_layernorm)
        if any(type(norm).__name__ != norm_class for norm in norms):
            return False
        attention = layer.self_attn
        if not all(hasattr(attention, name) for name in ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim")):
            return False
        if any(hasattr(attention, name) for name in ("q_norm", "k_norm")):
            return False
        if getattr(attention, "sliding_window", None) is not None:
            return False
    return type(inner.norm).__name__ == norm_class and hasattr(model, "lm_head")


def _projection(modules: Sequence[Any]) -> Projection:
    """One callable giving the outputs of these linear layers (which read the same input) side by side."""
    groups = {id(module.group) for module in modules if isinstance(module, QuantizedLinear)}
    if len(groups) == 1 and all(isinstance(module, QuantizedLinear) for module in modules):
        group = modules[0].group
        if [module.member for module in modules] == list(range(len(group.sizes))):
            return group.product  # type: ignore[no-any-return]
    if len(modules) == 1:
        return modules[0]  # type: ignore[no-any-return]

    def side_by_side(inputs: torch.Tensor) -> torch.Tensor:
        return torch.cat([module(inputs) for module in modules], dim=-1)

    return side_by_side
