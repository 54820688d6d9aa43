"""Quality report beside the speed figures, so no speed-up silently costs quality.

- perplexity of the model on ``bench/data/story.txt`` (a fixed text shipped in the repo);
- ROUGE-L F1 of the summary task against reference summaries written for the repo (``bench/data/summaries.json``);
- distinct-2 (share of unique word pairs: higher is more varied) and repetition rate (share of word 4-grams that
  repeat an earlier one: lower is better) of stories and poems generated with fixed seeds.

Run: ``.venv/bin/python bench/eval.py``; prints one JSON object.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import sys
from pathlib import Path

from device import bench_device

DATA = Path(__file__).with_name("data")
POEMS = [("the sea", "free verse"), ("autumn", "haiku"), ("a city at night", "sonnet")]


def words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 from the longest common subsequence of words."""
    a, b = words(candidate), words(reference)
    if not a or not b:
        return 0.0
    previous = [0] * (len(b) + 1)
    for word in a:
        current = [0]
        for index, other in enumerate(b, 1):
            current.append(previous[index - 1] + 1 if word == other else max(previous[index], current[-1]))
        previous = current
    lcs = previous[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


def distinct_2(text: str) -> float:
    tokens = words(text)
    pairs = list(zip(tokens, tokens[1:], strict=False))
    return len(set(pairs)) / len(pairs) if pairs else 0.0


def repetition_rate(text: str) -> float:
    tokens = words(text)
    grams = [tuple(tokens[index : index + 4]) for index in range(len(tokens) - 3)]
    seen: set[tuple[str, ...]] = set()
    repeated = 0
    for gram in grams:
        repeated += gram in seen
        seen.add(gram)
    return repeated / len(grams) if grams else 0.0


def perplexity(engine: object, text: str, window: int = 1024) -> float:
    import torch

    model = engine.model  # type: ignore[attr-defined]
    ids = engine.tokenizer(text, return_tensors="pt")["input_ids"][:, :window].to(model.device)  # type: ignore[attr-defined]
    with torch.inference_mode():
        loss = model(input_ids=ids, labels=ids).loss
    return float(math.exp(loss.item()))


def main() -> None:
    from assistant.core.prompts import PoemRequest, StoryRequest, SummaryRequest
    from assistant.core.settings import SamplerSettings
    from assistant.engine.generate import Engine
    from assistant.engine.models import load_model
    from assistant.engine.tasks import run_task

    engine = Engine(load_model(device=bench_device()))
    report: dict[str, float] = {"perplexity": round(perplexity(engine, (DATA / "story.txt").read_text("utf-8")), 3)}

    greedy = SamplerSettings(temperature=0, repetition_penalty=1.1, max_new_tokens=96)
    scores = []
    for item in json.loads((DATA / "summaries.json").read_text("utf-8")):
        summary = run_task(engine, SummaryRequest(item["text"], use_cache=False), greedy).text()
        scores.append(rouge_l(summary, item["reference"]))
    report["summary_rouge_l"] = round(statistics.mean(scores), 4)

    creative = SamplerSettings(temperature=0.8, max_new_tokens=160)
    stories = [
        run_task(engine, StoryRequest(opening), creative.with_changes(seed=seed)).text()
        for seed, opening in enumerate(
            [
                "The lighthouse keeper found the box on the shore at dawn.",
                "Nobody in the village had seen the stranger arrive.",
                "The train stopped in the middle of the snowy plain and did not move again.",
            ]
        )
    ]
    poems = [
        run_task(engine, PoemRequest(theme, form), creative.with_changes(seed=seed)).text()
        for seed, (theme, form) in enumerate(
            [("the sea", "free verse"), ("autumn", "haiku"), ("a city at night", "sonnet")]
        )
    ]
    report["story_distinct_2"] = round(statistics.mean(distinct_2(text) for text in stories), 4)
    report["story_repetition"] = round(statistics.mean(repetition_rate(text) for text in stories), 4)
    report["poem_distinct_2"] = round(statistics.mean(distinct_2(text) for text in poems), 4)
    report["poem_repetition"] = round(statistics.mean(repetition_rate(text) for text in poems), 4)
    json.dump(report, sys.stdout)
    print()


if __name__ == "__main__":
    main()
