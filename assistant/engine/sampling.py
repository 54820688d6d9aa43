"""Choosing the next token from the model's scores with transformers' own logits processors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from assistant.core.settings import SamplerSettings

if TYPE_CHECKING:
    import torch


def build_processors(settings: SamplerSettings) -> Any:
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        MinPLogitsWarper,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    processors = LogitsProcessorList()
    if settings.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(settings.repetition_penalty))
    if settings.temperature > 0:
        if settings.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(settings.temperature))
        if settings.top_k > 0:
            processors.append(TopKLogitsWarper(settings.top_k))
        if settings.top_p < 1.0:
            processors.append(TopPLogitsWarper(settings.top_p))
        if settings.min_p > 0:
            processors.append(MinPLogitsWarper(settings.min_p))
    return processors


def pick_token(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    processors: Any,
    settings: SamplerSettings,
    generator: torch.Generator,
) -> int:
    import torch

    scores = processors(input_ids, logits)
    if settings.temperature <= 0:
        return int(torch.argmax(scores, dim=-1).item())
    probabilities = torch.softmax(scores, dim=-1).cpu()
    return int(torch.multinomial(probabilities, num_samples=1, generator=generator).item())
