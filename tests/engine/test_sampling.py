"""The fast sampler picks from exactly the tokens, with exactly the probabilities, that transformers' warpers give."""

from __future__ import annotations

import pytest
import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from assistant.core.settings import SamplerSettings
from assistant.engine.sampling import build_processors, candidate_scores, pick_token


def reference_distribution(scores: torch.Tensor, settings: SamplerSettings) -> dict[int, float]:
    warpers = LogitsProcessorList()
    if settings.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(settings.temperature))
    if settings.top_k > 0:
        warpers.append(TopKLogitsWarper(settings.top_k))
    if settings.top_p < 1.0:
        warpers.append(TopPLogitsWarper(settings.top_p))
    if settings.min_p > 0:
        warpers.append(MinPLogitsWarper(settings.min_p))
    warped = warpers(torch.zeros((1, 1), dtype=torch.long), scores[None].clone())[0]
    probabilities = torch.softmax(warped, dim=-1)
    return {int(index): float(probabilities[index]) for index in torch.nonzero(probabilities > 0).flatten()}


@pytest.mark.parametrize(
    "settings",
    [
        SamplerSettings(),  # the app's defaults: temperature 0.7, top-k 40, top-p 0.9, min-p 0.05
        SamplerSettings(temperature=1.0, top_k=0, top_p=0.95, min_p=0.0),
        SamplerSettings(temperature=1.3, top_k=5, top_p=1.0, min_p=0.0),
        SamplerSettings(temperature=0.5, top_k=0, top_p=1.0, min_p=0.2),
        SamplerSettings(temperature=0.9, top_k=100, top_p=0.5, min_p=0.01),
    ],
)
def test_candidates_match_transformers_warpers(settings: SamplerSettings) -> None:
    generator = torch.Generator().manual_seed(7)
    for _ in range(20):
        scores = torch.randn(49152, generator=generator) * 4
        expected = reference_distribution(scores, settings)
        values, token_ids = candidate_scores(scores, settings)
        probabilities = torch.softmax(values, dim=-1)
        ours = {int(token): float(probability) for token, probability in zip(token_ids, probabilities, strict=True)}
        assert set(ours) == set(expected)
        for token, probability in expected.items():
            assert ours[token] == pytest.approx(probability, rel=1e-4, abs=1e-7)


def test_one_dominant_token_is_always_kept() -> None:
    scores = torch.full((1000,), -50.0)
    scores[3] = 50.0
    values, token_ids = candidate_scores(scores, SamplerSettings(top_p=0.01, min_p=0.99))
    assert token_ids.tolist() == [3]


def test_sampling_follows_the_seed_and_the_probabilities() -> None:
    settings = SamplerSettings(temperature=1.0, top_k=3, top_p=1.0, min_p=0.0, repetition_penalty=1.0)
    scores = torch.full((1, 100), -20.0)
    scores[0, 10], scores[0, 20], scores[0, 30] = 2.0, 1.0, 0.0  # probabilities 0.665, 0.245, 0.090
    processors = build_processors(settings)
    ids = torch.zeros((1, 1), dtype=torch.long)
    draws = [pick_token(scores, ids, processors, settings, torch.Generator().manual_seed(seed)) for seed in range(3000)]
    again = [pick_token(scores, ids, processors, settings, torch.Generator().manual_seed(seed)) for seed in range(3000)]
    assert draws == again
    assert set(draws) == {10, 20, 30}
    assert draws.count(10) / len(draws) == pytest.approx(0.665, abs=0.03)
    assert draws.count(30) / len(draws) == pytest.approx(0.090, abs=0.02)


def test_repetition_penalty_still_applies() -> None:
    settings = SamplerSettings(temperature=0, repetition_penalty=10.0)
    scores = torch.zeros((1, 10))
    scores[0, 4], scores[0, 5] = 3.0, 1.0
    ids = torch.tensor([[4]])
    assert pick_token(scores, ids, build_processors(settings), settings, torch.Generator()) == 5
