"""Attention for bf16 models on the CPU: long prompts attend in fp32.

A model with quantized weights runs its activations in bf16 (the quantized kernels take bf16), but torch's CPU
flash-attention kernel is slower in bf16 than in fp32 once a prompt is a few hundred tokens long: 5.7 vs 4.0 ms per
layer at 511 tokens and 46.5 vs 30.3 ms at 2,047 on the 2-core reference machine. Converting queries, keys and
values to fp32 for those prompts cut the bundled model's time to first token at 512 and 2,048 tokens by about 15%
(measured 859 -> 683 ms and 3,417 -> 2,949 ms). Single tokens and short chunks keep bf16, where it is as fast.

It is transformers' own SDPA attention, registered under another name so only the models we switch to it use it.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

log = logging.getLogger(__name__)

NAME = "penwright_sdpa"
FP32_FROM_ROWS = 128
"""Queries (prompt tokens in one forward) from which attention runs in fp32."""

_registered = False


def _attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, Any]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if query.dtype == torch.bfloat16 and query.device.type == "cpu" and query.shape[2] >= FP32_FROM_ROWS:
        if attention_mask is not None and attention_mask.is_floating_point():
            attention_mask = attention_mask.float()  # an additive mask must match the queries' dtype
        output, weights = sdpa_attention_forward(
            module, query.float(), key.float(), value.float(), attention_mask, **kwargs
        )
        return output.to(torch.bfloat16), weights
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)  # type: ignore[no-any-return]


def _register() -> None:
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(NAME, _attention)
    AttentionMaskInterface.register(NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    _registered = True


def use_fp32_for_long_prompts(model: Any) -> bool:
    """Switch a bf16 CPU model that uses SDPA attention to :data:`NAME`; False (nothing changed) otherwise."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    if getattr(model, "dtype", None) != torch.bfloat16 or getattr(model, "device", None) != torch.device("cpu"):
        return False
    try:
        _register()
        model.set_attn_implementation(NAME)
    except Exception as error:  # an older transformers, or a model that refuses other attention functions
        log.info("Keeping SDPA attention in bf16 for long prompts: %s", error)
        return False
    return bool(config._attn_implementation == NAME)
