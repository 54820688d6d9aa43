"""Choosing the next token from the model's scores.

The repetition penalty is transformers' own processor. The warpers (temperature, top-k, top-p, min-p) follow
transformers' definitions and order, but run on the top-k candidates instead of the whole vocabulary: transformers'
TopPLogitsWarper sorts all 49,152 scores of the bundled model at every token, 3.4 ms of a 17 ms decode step on the
2-core reference machine, while ``torch.topk`` of 40 takes a few hundredths of that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from assistant.core.settings import SamplerSettings

if TYPE_CHECKING:
    import torch


def build_processors(settings: SamplerSettings) -> Any:
    """The processors applied to the full scores before sampling (the repetition penalty)."""
    from transformers.generation.logits_process import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

    processors = LogitsProcessorList()
    if settings.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(settings.repetition_penalty))
    return processors


def pick_token(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    processors: Any,
    settings: SamplerSettings,
    generator: torch.Generator,
) -> int:
    import torch

    scores = processors(input_ids, logits) if processors else logits
    if settings.temperature <= 0:
        return int(torch.argmax(scores, dim=-1).item())
    candidates, token_ids = candidate_scores(scores[0], settings)
    probabilities = torch.softmax(candidates, dim=-1).cpu()
    choice = int(torch.multinomial(probabilities, num_samples=1, generator=generator).item())
    return int(token_ids[choice].item())


def candidate_scores(scores: torch.Tensor, settings: SamplerSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens that may be sampled and their scores, best first, after temperature, top-k, top-p and min-p.

    Same rules as transformers' warpers: top-p keeps the smallest set of best tokens whose probability reaches
    ``top_p``; min-p drops tokens less likely than ``min_p`` times the best one; at least one token always stays.
    """
    import torch

    scores = scores.float()
    if settings.temperature != 1.0:
        scores = scores / settings.temperature
    if 0 < settings.top_k < scores.shape[-1]:
        values, token_ids = torch.topk(scores, settings.top_k)
    else:
        values, token_ids = torch.sort(scores, descending=True)
    keep = torch.ones_like(values, dtype=torch.bool)
    if settings.top_p < 1.0:
        probabilities = torch.softmax(values, dim=-1)
        # As transformers does it (a cumulative sum from the least likely token up), so the boundary token is
        # decided with the same rounding: drop a token when it and all worse ones hold at most 1 - top_p.
        from_worst = torch.flip(torch.cumsum(torch.flip(probabilities, dims=[0]), dim=0), dims=[0])
        keep &= from_worst > 1 - settings.top_p
    if settings.min_p > 0:
        keep &= values >= values[0] + torch.log(torch.tensor(settings.min_p))
    keep[0] = True
    count = int(keep.sum().item())
    # keep is a prefix of the sorted list: both rules drop only from the tail.
    return values[:count], token_ids[:count]
