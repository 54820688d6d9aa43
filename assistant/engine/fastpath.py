"""A lean decode step for Llama-style models: one token through every layer without transformers' module calls.

Why: a decode step of the bundled model through transformers' modules took 15.3 ms on the 2-core reference machine,
of which the matrix kernels are about 6 ms; the rest is per-module Python (argument handling, masks, output
objects, cache bookkeeping) repeated over 30 layers. The same arithmetic written as one loop took 10.1 ms, and
8.2 ms once TorchScript runs that loop (no Python between the ~35 tensor operations of a layer). Both give
bit-identical scores (tested against the model's own forward).

``torch.jit.script`` is deprecated in favour of ``torch.compile``, which needs a C++ compiler at run time that a
desktop user does not have; when scripting fails (a torch without TorchScript), the same function runs as plain
Python, about 20% slower.

Only single-token steps take this path (decoding, and the prompt's last token); prompts still run through the
model's forward, where the matrix products dominate. It covers the families whose decoder layer is transformers'
plain Llama one (Llama, Mistral, Qwen2: RMSNorm, rotary positions, grouped-query attention, a SiLU-gated MLP) on one
CPU device; anything else (sliding windows, norms on q/k, remote code, PEFT adapters, offloading hooks, GPUs) keeps
the model's own forward. A voice (voices.py) is no PEFT adapter at run time: quantized groups hold its low-rank
change, which both steps add as the groups do (:meth:`FastDecoder.refresh_voice`).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as functional

from assistant.engine.attention import NAME as FP32_LONG_PROMPT_ATTENTION
from assistant.engine.kvcache import GrowingLayer
from assistant.engine.native import NativeLayers
from assistant.engine.quantize import INT4_GROUP_SIZE, QuantizedLinear

log = logging.getLogger(__name__)

SUPPORTED_LAYERS = {
    "llama": ("LlamaDecoderLayer", "LlamaRMSNorm"),
    "mistral": ("MistralDecoderLayer", "MistralRMSNorm"),
    "qwen2": ("Qwen2DecoderLayer", "Qwen2RMSNorm"),
}
"""model_type -> the decoder layer and norm classes (transformers' own) whose arithmetic is reproduced here."""

FAST_STEP_TOLERANCE = 1e-3
"""The largest difference (relative to the largest score) the fast step may show against the model's forward on its
load-time probe. It is normally exactly 0 (the tests demand that); a step that computes something else is far off."""

NATIVE_STEP_TOLERANCE = 0.10
NATIVE_STEP_DIVERGENCE = 0.05
"""The same for the native step (native.py), on a 24-token probe, plus a bound on the KL divergence (nats) of its
next-token probabilities from the reference's. It rounds activations to int8 per block of 32, so its scores differ a
little by design; the reference is the model's forward with fp32 activations in its quantized products (the same
weights, see :func:`_exact_activations`), since the forward's usual bf16 activations (and the head's per-row int8
ones) are themselves 0.01-0.03 nats off and once put a right step with a voice over the bound (0.07). Measured on the
bundled model (Xeon, AVX-512): 0.003-0.006 nats and 2.5% when right, with or without a voice; 0.12-0.32 nats with a
voice left out of the step. Under the AVX2 class, against the bf16 forward: 30% with the rotary positions left out,
141% with query heads mapped to the wrong key/value heads. Its quality is held by a perplexity test (it matched the
TorchScript step's: 28.7 vs 28.9)."""

LINEAR, INT8, INT4 = 0, 1, 2
"""How a projection multiplies: ``F.linear``, the int8 weight-only kernel, or the int4 one."""

Projection = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class _Part:
    """One matrix product of a projection: several for unfused siblings (q, k, v as separate layers)."""

    kind: int
    weight: torch.Tensor
    scales: torch.Tensor
    bias: torch.Tensor | None
    group: Any = None
    """The quantized weight group the part multiplies by (int4 and int8), for the native step."""


def _project(
    inputs: torch.Tensor,
    kind: int,
    weight: torch.Tensor,
    scales: torch.Tensor,
    bias: torch.Tensor | None,
    down: torch.Tensor | None,
    up: torch.Tensor | None,
) -> torch.Tensor:
    """``inputs @ W.T + bias`` (+ a voice's ``up @ down @ inputs``) exactly as ``nn.Linear`` or quantize.py's groups
    compute it."""
    if kind == 0:
        return functional.linear(inputs, weight, bias)
    activations = inputs if inputs.dtype == torch.bfloat16 else inputs.to(torch.bfloat16)
    if kind == 1:
        result = torch.ops.aten._weight_int8pack_mm(activations, weight, scales)
    else:
        result = torch.ops.aten._weight_int4pack_mm_for_cpu(activations, weight, 32, scales)
    if bias is not None:
        result = result + bias
    if down is not None and up is not None:
        result = result.float() + functional.linear(functional.linear(inputs.float(), down), up)
    return result if result.dtype == inputs.dtype else result.to(inputs.dtype)


def _slot(
    inputs: torch.Tensor,
    slot: int,
    starts: list[int],
    kinds: list[int],
    weights: list[torch.Tensor],
    scales: list[torch.Tensor],
    biases: list[torch.Tensor | None],
    downs: list[torch.Tensor | None],
    ups: list[torch.Tensor | None],
) -> torch.Tensor:
    """All parts of one projection (slot), side by side."""
    start, end = starts[slot], starts[slot + 1]
    if end - start == 1:
        return _project(inputs, kinds[start], weights[start], scales[start], biases[start], downs[start], ups[start])
    outputs = [
        _project(inputs, kinds[index], weights[index], scales[index], biases[index], downs[index], ups[index])
        for index in range(start, end)
    ]
    return torch.cat(outputs, dim=-1)


def _norm(hidden: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm exactly as transformers' Llama computes it: in fp32, scaled by the weight in the model's dtype."""
    as_float = hidden.float()
    variance = as_float.pow(2).mean(-1, keepdim=True)
    return weight * (as_float * torch.rsqrt(variance + eps)).to(hidden.dtype)


def _decode_layers(
    hidden: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    input_norms: list[torch.Tensor],
    post_norms: list[torch.Tensor],
    starts: list[int],
    kinds: list[int],
    weights: list[torch.Tensor],
    scales: list[torch.Tensor],
    biases: list[torch.Tensor | None],
    downs: list[torch.Tensor | None],
    ups: list[torch.Tensor | None],
    key_buffers: list[torch.Tensor],
    value_buffers: list[torch.Tensor],
    position: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    intermediate: int,
    eps: float,
    scaling: float,
) -> torch.Tensor:
    """One token ([1, hidden]) through every decoder layer; its keys and values go to ``position`` in the buffers.

    Written in the subset of Python that TorchScript compiles; slots 4i..4i+3 are layer i's q/k/v, output, gate/up
    and down projections.
    """
    half = head_dim // 2
    query_width = heads * head_dim
    rotated_width = query_width + kv_heads * head_dim
    for index in range(len(input_norms)):
        qkv = _slot(
            _norm(hidden, input_norms[index], eps), 4 * index, starts, kinds, weights, scales, biases, downs, ups
        )
        # Rotary positions for queries and keys in one go: x * cos + rotate_half(x) * sin.
        query_key = qkv[:, :rotated_width].view(1, heads + kv_heads, head_dim)
        turned = torch.cat((-query_key[:, :, half:], query_key[:, :, :half]), dim=-1)
        query_key = query_key * cos + turned * sin
        query = query_key[:, :heads].view(1, heads, 1, head_dim)
        key_buffers[index][:, :, position : position + 1] = query_key[:, heads:].view(1, kv_heads, 1, head_dim)
        value_buffers[index][:, :, position : position + 1] = qkv[:, rotated_width:].view(1, kv_heads, 1, head_dim)
        attended = functional.scaled_dot_product_attention(
            query,
            key_buffers[index][:, :, : position + 1],
            value_buffers[index][:, :, : position + 1],
            scale=scaling,
            enable_gqa=heads != kv_heads,
        )
        hidden = hidden + _slot(
            attended.view(1, query_width), 4 * index + 1, starts, kinds, weights, scales, biases, downs, ups
        )
        gate_up = _slot(
            _norm(hidden, post_norms[index], eps), 4 * index + 2, starts, kinds, weights, scales, biases, downs, ups
        )
        activated = functional.silu(gate_up[:, :intermediate]) * gate_up[:, intermediate:]
        hidden = hidden + _slot(activated, 4 * index + 3, starts, kinds, weights, scales, biases, downs, ups)
    return hidden


_compiled: Callable[..., torch.Tensor] | None = None


def _layers_function(script: bool) -> tuple[Callable[..., torch.Tensor], bool]:
    """The layer loop, compiled by TorchScript when it can be (once per process); the plain function otherwise."""
    global _compiled
    if not script:
        return _decode_layers, False
    if _compiled is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # see the module docstring
                warnings.simplefilter("ignore", FutureWarning)
                _compiled = torch.jit.script(_decode_layers)
        except Exception as error:  # a torch without TorchScript: the same loop in Python
            log.info("TorchScript unavailable (%s); the fast decode step runs as Python.", error)
            _compiled = _decode_layers
    return _compiled, _compiled is not _decode_layers


class FastDecoder:
    """Runs one token at a time through a Llama-style model, writing its keys and values into a growing KV cache.

    Build it with :meth:`for_model`, which returns None for models it does not reproduce exactly.
    """

    def __init__(self, model: Any, script: bool = True, native: bool = True) -> None:
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
        self._intermediate = int(first.mlp.gate_proj.out_features)
        self._input_norms = [layer.input_layernorm.weight for layer in inner.layers]
        self._post_norms = [layer.post_attention_layernorm.weight for layer in inner.layers]
        parts: list[_Part] = []
        self._starts = [0]
        for layer in inner.layers:
            attention, mlp = layer.self_attn, layer.mlp
            for modules in (
                [attention.q_proj, attention.k_proj, attention.v_proj],
                [attention.o_proj],
                [mlp.gate_proj, mlp.up_proj],
                [mlp.down_proj],
            ):
                slot_parts = _parts(modules)
                if slot_parts is None:
                    raise ValueError(f"unsupported projection: {type(modules[0]).__name__}")
                parts.extend(slot_parts)
                self._starts.append(len(parts))
        self._groups = [part.group for part in parts]
        self._kinds = [part.kind for part in parts]
        self._weights = [part.weight for part in parts]
        self._scales = [part.scales for part in parts]
        self._biases = [part.bias for part in parts]
        self._head = _head_projection(model.lm_head)
        self._positions = torch.zeros((1, 1), dtype=torch.long)
        self._template = torch.empty((1, self.kv_heads, 0, self.head_dim), dtype=self._embedding.dtype)
        self._run, self.scripted = _layers_function(script)
        self._downs: list[torch.Tensor | None] = []
        self._ups: list[torch.Tensor | None] = []
        self.native: NativeLayers | None = None
        self.native_note = ""
        """Why the native step is not used (not applicable, or it failed its check); empty when it is."""
        if native:
            self.native, self.native_note = self._native_layers(model)
        self.refresh_voice()

    def refresh_voice(self) -> None:
        """Take up the voice now in the quantized groups (their ``low_rank``); full-precision layers have it merged
        into their weights already. Call :meth:`verify` after it: the step is checked with the voice it runs."""
        voices = [None if group is None else group.low_rank for group in self._groups]
        self._downs = [None if voice is None else voice[0] for voice in voices]
        self._ups = [None if voice is None else voice[1] for voice in voices]
        if self.native is not None:
            self.native.set_low_rank(voices)

    def _native_layers(self, model: Any) -> tuple[NativeLayers | None, str]:
        """The native layer loop for an all-int4 fp32 model whose matrices all pass their checks; else why not."""
        from assistant.engine import native

        loaded, reason = native.library()
        if loaded is None:
            return None, reason
        # Not a fault, so nothing to report: the step is for fp32 models with int4 weights in every layer.
        if self._embedding.dtype != torch.float32:
            return None, ""
        if len(self._kinds) != 4 * len(self._input_norms) or any(kind != INT4 for kind in self._kinds):
            return None, ""
        head_module = model.lm_head
        head = None
        if isinstance(head_module, QuantizedLinear):
            group = head_module.group
            if group.mode == "int8" and len(group.sizes) == 1 and group.bias is None:
                head = native.Int8Head(group)
        try:
            layers = native.NativeLayers(
                loaded,
                input_norms=self._input_norms,
                post_norms=self._post_norms,
                matrices=[native.Int4Matrix(group) for group in self._groups],
                final_norm=self._final_norm,
                head=head,
                heads=self.heads,
                kv_heads=self.kv_heads,
                head_dim=self.head_dim,
                intermediate=self._intermediate,
                eps=self._eps,
                scaling=self._scaling,
            )
            reason = layers.check()
        except (ValueError, RuntimeError, MemoryError) as error:
            return None, str(error)
        if reason:
            log.warning("Native decode step off: %s", reason)
            return None, f"it failed its self-check: {reason}"
        return layers, ""

    @classmethod
    def for_model(cls, model: Any, script: bool = True, native: bool = True) -> FastDecoder | None:
        """A fast decoder for ``model``, or None when its layers are not the plain Llama ones on one CPU device.

        ``native=False`` keeps the native step (native.py) out: the TorchScript step gives the forward's scores bit
        for bit, the native one only nearly."""
        try:
            return cls(model, script, native) if supports(model) else None
        except (AttributeError, ValueError, TypeError) as error:  # a layout supports() did not foresee
            log.info("Decoding through the model's own forward: %s", error)
            return None

    def verify(self, model: Any) -> str:
        """Empty when steps on a probe give the model's own forward scores; else why not (the engine then decodes
        through the forward). Doubles as the warm-up: TorchScript profiles and optimizes the loop on its first calls
        (72 and 36 ms instead of 12 for the bundled model), which would otherwise land on the user's first answer.
        """
        import inspect

        from assistant.engine.kvcache import new_cache

        vocabulary = int(model.config.vocab_size)
        prompt = [token % vocabulary for token in (1, 2, 3)]
        steps = [token % vocabulary for token in (4, 5, 4)]
        parameters = inspect.signature(model.forward).parameters
        cache_argument = "cache" if "cache" in parameters else "past_key_values"

        def forward(ids: list[int], cache: Any) -> torch.Tensor:
            kwargs = {cache_argument: cache, "use_cache": True, "logits_to_keep": 1}
            return model(input_ids=torch.tensor([ids]), **kwargs).logits[:, -1, :].float()

        def differs(
            prompt: list[int], steps: list[int], tolerance: float, divergence: float | None, exact: bool = False
        ) -> str:
            reference_cache, fast_cache = new_cache(model.config), new_cache(model.config)
            with torch.inference_mode():
                with _exact_activations(model, exact):
                    forward(prompt, reference_cache)
                forward(prompt, fast_cache)
                for token in steps:
                    with _exact_activations(model, exact):
                        wanted = forward([token], reference_cache)
                    got = self.step(token, fast_cache)
                    difference = float((got - wanted).abs().max()) / max(float(wanted.abs().max()), 1e-30)
                    if not difference <= tolerance:  # also catches NaN
                        return f"its scores differ from the model's own by {difference:.1%} on a probe"
                    if divergence is not None:
                        kl = float(
                            functional.kl_div(
                                torch.log_softmax(got, -1),
                                torch.log_softmax(wanted, -1),
                                log_target=True,
                                reduction="sum",
                            )
                        )
                        if not kl <= divergence:
                            return f"its next-token probabilities differ from the model's own by {kl:.2f} nats"
            return ""

        if self.native is not None:
            # A longer probe: attention over 24 positions shows a mix-up of heads or positions plainly.
            long_prompt = [(7919 * index + 1009) % vocabulary for index in range(24)]
            reason = differs(long_prompt, steps, NATIVE_STEP_TOLERANCE, NATIVE_STEP_DIVERGENCE, exact=True)
            if not reason:
                return ""
            log.warning("Native decode step off: %s", reason)
            self.native, self.native_note = None, f"it failed its self-check: {reason}"
        return differs(prompt, steps, FAST_STEP_TOLERANCE, None)

    def accepts(self, cache: Any) -> bool:
        """Whether this cache is one the step can extend (one growing layer per model layer)."""
        layers = getattr(cache, "layers", None)
        return (
            isinstance(layers, list)
            and len(layers) == len(self._input_norms)
            and all(type(layer) is GrowingLayer for layer in layers)
        )

    def step(self, token: int, cache: Any) -> torch.Tensor:
        """The scores for the token after ``token`` (fp32, [1, vocab]); ``token`` joins the cache.

        A failure part-way leaves the cache as it was: entries only count once every layer has written them.
        """
        with torch.inference_mode():
            layers: list[GrowingLayer] = cache.layers
            position = layers[0].filled
            key_buffers: list[torch.Tensor] = []
            value_buffers: list[torch.Tensor] = []
            for layer in layers:  # one pass: make room for the token, then hand the loop the buffers
                layer.reserve(self._template, self._template, 1)
                keys, values = layer.buffers
                key_buffers.append(keys)
                value_buffers.append(values)
            hidden = self._embedding[token].view(1, -1)
            self._positions.fill_(position)
            cos, sin = self._rotary(hidden, self._positions)
            if self.native is not None:
                out = self.native.run(
                    hidden.view(-1).clone(),
                    cos.reshape(-1).contiguous(),
                    sin.reshape(-1).contiguous(),
                    key_buffers,
                    value_buffers,
                    position,
                )
                for layer in layers:
                    layer.advance(1)
                scores = out.view(1, -1)
                return scores if self.native.head is not None else self._head(scores).float()
            hidden = self._run(
                hidden,
                cos.view(1, 1, self.head_dim),
                sin.view(1, 1, self.head_dim),
                self._input_norms,
                self._post_norms,
                self._starts,
                self._kinds,
                self._weights,
                self._scales,
                self._biases,
                self._downs,
                self._ups,
                key_buffers,
                value_buffers,
                position,
                self.heads,
                self.kv_heads,
                self.head_dim,
                self._intermediate,
                self._eps,
                self._scaling,
            )
            for layer in layers:
                layer.advance(1)
            return self._head(_norm(hidden, self._final_norm, self._eps)).float()


@contextlib.contextmanager
def _exact_activations(model: Any, exact: bool) -> Iterator[None]:
    """The model's forward with fp32 activations in its quantized products (same weights): the native step's
    reference. The usual bf16 activations carry most of the forward's own error: on the bundled model the forward
    was 0.024 nats from an fp32 product of the same int4 weights, the native step 0.005 (Xeon, AVX-512)."""
    if not exact:
        yield
        return
    groups = {id(module.group): module.group for module in model.modules() if isinstance(module, QuantizedLinear)}
    for group in groups.values():
        group.exact_activations = True
    try:
        yield
    finally:
        for group in groups.values():
            group.exact_activations = False


def supports(model: Any) -> bool:
    """Whether :class:`FastDecoder` reproduces this model's forward pass."""
    config = getattr(model, "config", None)
    classes = SUPPORTED_LAYERS.get(getattr(config, "model_type", ""))
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if classes is None or inner is None or not layers or getattr(model, "training", True):
        return False
    if getattr(config, "hidden_act", "") != "silu" or getattr(config, "pretraining_tp", 1) not in (None, 1):
        return False
    if getattr(config, "sliding_window", None) is not None and getattr(config, "use_sliding_window", True):
        return False  # Qwen2 names a window it does not use unless use_sliding_window is set
    if getattr(config, "_attn_implementation", None) not in ("sdpa", FP32_LONG_PROMPT_ATTENTION):
        return False  # eager or flex attention round differently
    if not all(hasattr(inner, name) for name in ("rotary_emb", "embed_tokens", "norm")) or not hasattr(
        model, "lm_head"
    ):
        return False
    parameters = list(model.parameters())
    if not parameters or any(parameter.device.type != "cpu" for parameter in parameters):
        return False
    if any(hasattr(module, "_hf_hook") for module in model.modules()):  # accelerate offloading or device maps
        return False
    if getattr(model, "peft_config", None):
        return False
    decoder_class, norm_class = classes
    for layer in layers:
        if not _is_transformers_class(layer, decoder_class):  # remote code may reuse the names, not the maths
            return False
        norms = (layer.input_layernorm, layer.post_attention_layernorm)
        if not all(_is_transformers_class(norm, norm_class) for norm in norms):
            return False
        attention, mlp = layer.self_attn, layer.mlp
        if not all(hasattr(attention, name) for name in ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim")):
            return False
        if not all(hasattr(mlp, name) for name in ("gate_proj", "up_proj", "down_proj")):
            return False
        if any(hasattr(attention, name) for name in ("q_norm", "k_norm")):
            return False
        if getattr(attention, "sliding_window", None) is not None:
            return False
    return _is_transformers_class(inner.norm, norm_class)


def _is_transformers_class(module: Any, name: str) -> bool:
    kind = type(module)
    return kind.__name__ == name and kind.__module__.startswith("transformers.models.")


def _parts(modules: Sequence[Any]) -> list[_Part] | None:
    """The matrix products that give these sibling projections side by side; None for an unknown kind of layer."""
    first = modules[0]
    if all(isinstance(module, QuantizedLinear) for module in modules) and len({id(m.group) for m in modules}) == 1:
        group = first.group
        members = [module.member for module in modules]
        if members == list(range(len(group.sizes))) and not (group.int8_activations or group.float_output):
            if group.mode == "int8":
                return [_Part(INT8, group.qweight, group.scale, group.bias, group)]
            if group.mode == "int4" and INT4_GROUP_SIZE == 32:
                return [_Part(INT4, group.packed, group.step_and_zero, group.bias, group)]
        return None
    if all(type(module) is torch.nn.Linear for module in modules):
        empty = torch.empty(0)
        return [_Part(LINEAR, module.weight, empty, module.bias) for module in modules]
    return None


def _head_projection(module: Any) -> Projection:
    """The output head: a quantized layer's own product (fp32 scores, int8 activations), or the module."""
    if isinstance(module, QuantizedLinear) and len(module.group.sizes) == 1:
        return module.group.product  # type: ignore[no-any-return]
    return module  # type: ignore[no-any-return]
