"""Inline-suggestion quality on tasks no one here wrote the answers to: lines cut from Python's own standard library.

Each task takes a stdlib module (a fixed list, in this Python's ``sysconfig.get_paths()["stdlib"]``), removes one
line chosen with a fixed seed (code, not a comment or a docstring line, at most 80 characters, at least
``MIN_LINES_BEFORE`` lines into the file) and puts the cursor where that line's code began: the prefix keeps the
line's indentation, as an editor leaves it after Enter, and the suffix is everything after the line. The answer is
the removed line's code. ``prefix + expected + suffix`` is the original file.

Two methods on one loaded model, in the same run:

- **pipeline**: exactly what ``penwright complete --mode code --language python`` runs (``command_complete`` in
  ``assistant/cli.py``): an ``InlineRequest`` with the whole prefix and suffix, ``EngineSession(engine).completer
  .suggest(request, settings=INLINE_SETTINGS)``, which trims the context to its own limits and applies the
  completion rules. Called in-process so the model loads once; one real ``penwright complete`` subprocess on the
  first task checks that the command gives the same text.
- **naive**: the same model's plain greedy continuation of the same prefix window (the newest ``prefix_tokens``
  tokens the completer keeps, from a line start) through ``Engine.stream``: no suffix, no FIM, no rules except
  cutting at the first newline, the same ``max_new_tokens``.

Figures per method: exact match (the suggestion's first line, stripped, equals the removed line, stripped), still
parses (the file with that first line in place of the removed one passes ``ast.parse``) and latency. The JSON on
stdout is the summary; ``bench/results/inline_quality.json`` adds every task's answers.

Run: ``HF_HUB_OFFLINE=1 .venv/bin/python bench/inline_quality.py [--tasks 100] [--seed 12]`` (``make eval``).
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import io
import json
import os
import random
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import tokenize
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results" / "inline_quality.json"
RULES_FILES = ("assistant/engine/completion.py", "assistant/core/completion_rules.py", "assistant/core/inline.py")
"""The code whose answers the benchmark scores: its digest goes into the results beside the figures."""

MODULES = (
    "textwrap.py",
    "json/encoder.py",
    "json/decoder.py",
    "string.py",
    "shlex.py",
    "fnmatch.py",
    "bisect.py",
    "heapq.py",
    "colorsys.py",
    "glob.py",
    "queue.py",
    "statistics.py",
    "calendar.py",
    "difflib.py",
    "posixpath.py",
    "csv.py",
    "base64.py",
    "copy.py",
    "pprint.py",
    "fractions.py",
)
"""Stdlib modules the tasks come from, in this order; one missing from this Python is skipped."""

SEED = 12
DEFAULT_TASKS = 100
MAX_LINE_CHARS = 80
MIN_LINES_BEFORE = 20
GOAL_RATIO = 2.0
_SPANNING = {tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
_CODE = {tokenize.NAME, tokenize.NUMBER, tokenize.OP}


@dataclass(frozen=True)
class InfillTask:
    """One removed line: the cursor sits after the line's indentation, the rest of the file follows."""

    module: str
    line: int
    """1-based number of the removed line in the module."""
    prefix: str
    expected: str
    suffix: str

    @property
    def text(self) -> str:
        return self.prefix + self.expected + self.suffix


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def read_source(path: Path) -> str:
    """A module's text as Python reads it (its declared encoding), with newline characters as they are."""
    with open(path, "rb") as raw:
        encoding, _ = tokenize.detect_encoding(raw.readline)
    return path.read_bytes().decode(encoding)


def candidate_lines(text: str) -> list[int]:
    """0-based indexes of the lines a task may remove: code, short enough, far enough into the file.

    Left out: blank lines, comment lines and lines with a trailing comment, lines of a string that spans lines
    (docstrings), lines holding only strings, lines without a letter or digit (a lone ``)``), and lines with tabs.
    """
    lines = text.splitlines(keepends=True)
    excluded: set[int] = set()
    code: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        first, last = token.start[0] - 1, token.end[0] - 1
        if token.type == tokenize.COMMENT:
            excluded.add(first)
        elif token.type not in _SPANNING and last > first:
            excluded.update(range(first, last + 1))
        elif token.type in _CODE:
            code.add(first)
    chosen = []
    for index, line in enumerate(lines):
        content = line.rstrip("\r\n")
        if (
            index >= MIN_LINES_BEFORE
            and index in code
            and index not in excluded
            and len(content) <= MAX_LINE_CHARS
            and "\t" not in content
            and any(char.isalnum() for char in content)
            and content == content.rstrip()
        ):
            chosen.append(index)
    return chosen


@functools.lru_cache(maxsize=64)
def _module_lines(path: Path) -> tuple[str, tuple[int, ...]]:
    text = read_source(path)
    return text, tuple(candidate_lines(text))


def task_at(module: str, text: str, index: int) -> InfillTask:
    """The task that removes line ``index`` (0-based) of ``text``."""
    lines = text.splitlines(keepends=True)
    line = lines[index]
    content = line.rstrip("\r\n")
    indent = len(content) - len(content.lstrip())
    before = "".join(lines[:index])
    return InfillTask(
        module=module,
        line=index + 1,
        prefix=before + content[:indent],
        expected=content[indent:],
        suffix=line[len(content) :] + "".join(lines[index + 1 :]),
    )


def extract_tasks(
    count: int = DEFAULT_TASKS, seed: int = SEED, root: Path | None = None, modules: tuple[str, ...] = MODULES
) -> list[InfillTask]:
    """``count`` tasks, the same for the same Python, seed and count; a smaller count gives a prefix of the list.

    Each module's candidate lines are shuffled by ``Random(f"{seed}:{module}")``; the tasks take the modules in
    turn (round robin), so every module contributes about equally.
    """
    root = root or stdlib_root()
    queues: list[tuple[str, str, list[int]]] = []
    for module in modules:
        path = root / module
        if not path.is_file():
            continue
        text, candidates = _module_lines(path)
        order = list(candidates)
        random.Random(f"{seed}:{module}").shuffle(order)
        queues.append((module, text, order))
    tasks: list[InfillTask] = []
    round_ = 0
    while len(tasks) < count and any(round_ < len(order) for _, _, order in queues):
        for module, text, order in queues:
            if round_ < len(order) and len(tasks) < count:
                tasks.append(task_at(module, text, order[round_]))
        round_ += 1
    return tasks


# --- scoring ---------------------------------------------------------------------------------------------------


def first_line(suggestion: str) -> str:
    return suggestion.split("\n", 1)[0]


def exact_match(task: InfillTask, suggestion: str) -> bool:
    return first_line(suggestion).strip() == task.expected.strip()


def still_parses(task: InfillTask, suggestion: str) -> bool:
    """Whether the file with the suggestion's first line in place of the removed line is valid Python."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stdlib regexes in plain strings warn on newer Pythons
        try:
            ast.parse(task.prefix + first_line(suggestion) + task.suffix)
        except (SyntaxError, ValueError):
            return False
    return True


def summarize(tasks: list[InfillTask], answers: list[str], times_ms: list[float]) -> dict[str, float]:
    return {
        "exact_match": round(sum(exact_match(t, a) for t, a in zip(tasks, answers, strict=True)) / len(tasks), 4),
        "still_parses": round(sum(still_parses(t, a) for t, a in zip(tasks, answers, strict=True)) / len(tasks), 4),
        "empty": round(sum(not first_line(a).strip() for a in answers) / len(tasks), 4),
        "mean_ms": round(statistics.mean(times_ms), 1),
        "median_ms": round(statistics.median(times_ms), 1),
    }


# --- the two methods -------------------------------------------------------------------------------------------


def pipeline_suggest(completer: Any, task: InfillTask) -> str:
    """What ``penwright complete --mode code --language python`` prints for this cursor (same call as the CLI)."""
    from assistant.engine.completion import INLINE_SETTINGS, InlineRequest

    request = InlineRequest(mode="code", prefix=task.prefix, suffix=task.suffix, language="python", pane="cli")
    return str(completer.suggest(request, settings=INLINE_SETTINGS).text)


def prefix_window(tokenizer: Any, prefix: str, limit: int) -> str:
    """The newest ``limit`` tokens of the prefix or fewer, starting at a line start."""
    text = prefix[-limit * 6 :]  # the completer's own cap: about 6 characters a token at most
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    excess = len(encoded["input_ids"]) - limit
    if excess > 0:
        cut = encoded["offset_mapping"][excess][0]
        line_start = text.find("\n", max(cut - 1, 0))
        text = text[line_start + 1 :] if line_start >= 0 else text[cut:]
    elif len(text) < len(prefix) and "\n" in text:
        text = text[text.index("\n") + 1 :]
    return text


def naive_suggest(engine: Any, limit: int, task: InfillTask) -> str:
    """Greedy continuation of the prefix window, cut at the first newline."""
    from assistant.core.prompts import Prompt
    from assistant.engine.completion import INLINE_SETTINGS

    prompt = Prompt(text=prefix_window(engine.tokenizer, task.prefix, limit), stop=("\n",))
    return first_line(engine.stream(prompt, INLINE_SETTINGS.with_changes(seed=0)).text())


def timed(call: Any, *args: Any) -> tuple[str, float]:
    started = time.perf_counter()
    answer = call(*args)
    return answer, (time.perf_counter() - started) * 1000


def cli_run(task: InfillTask, device: str) -> dict[str, object]:
    """One real ``penwright complete`` run on the task, as an editor would call it; main compares its text."""
    executable = Path(sys.executable).with_name("penwright")
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "assistant"]
    with tempfile.TemporaryDirectory() as folder:
        prefix_file, suffix_file = Path(folder, "prefix.py"), Path(folder, "suffix.py")
        prefix_file.write_text(task.prefix, "utf-8")
        suffix_file.write_text(task.suffix, "utf-8")
        started = time.perf_counter()
        done = subprocess.run(
            [*command, "complete", "--mode", "code", "--language", "python", "--device", device]
            + ["--prefix-file", str(prefix_file), "--suffix-file", str(suffix_file)],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")},
        )
    if done.returncode != 0:
        raise RuntimeError(f"penwright complete failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return {
        "task": f"{task.module}:{task.line}",
        "cli": done.stdout,
        "seconds_with_load": round(time.perf_counter() - started, 1),
    }


def rules_digest() -> str:
    """sha256 (12 hex digits) of the completion code as it is on disk now."""
    digest = hashlib.sha256()
    for name in RULES_FILES:
        path = REPO / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0")
    return digest.hexdigest()[:12]


def git_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return done.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=DEFAULT_TASKS, metavar="N")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON with every task goes")
    parser.add_argument("--no-cli", action="store_true", help="skip the penwright complete subprocess check")
    args = parser.parse_args(argv)

    digest_at_start = rules_digest()
    sys.path.insert(0, str(BENCH))
    import cpu_class
    import torch
    from device import bench_device

    from assistant.engine.completion import INLINE_SETTINGS
    from assistant.engine.generate import Engine
    from assistant.engine.models import load_model
    from assistant.engine.session import EngineSession

    tasks = extract_tasks(args.tasks, args.seed)
    if not tasks:
        print("inline_quality: no stdlib module of the list was found", file=sys.stderr)
        return 1
    machine = cpu_class.describe("native")
    # The command first, so it and this process read the completion code at about the same time.
    cli_answer = None if args.no_cli else cli_run(tasks[0], bench_device())
    digest_after_cli = rules_digest()
    engine = Engine(load_model(device=bench_device()))
    completer = EngineSession(engine).completer
    limit = int(getattr(completer, "prefix_tokens", 1024))
    warm = extract_tasks(1, args.seed + 1)[0]  # one untimed call each, so no method pays the first-call costs
    pipeline_suggest(completer, warm)
    naive_suggest(engine, limit, warm)

    pipeline: list[tuple[str, float]] = []
    naive: list[tuple[str, float]] = []
    for number, task in enumerate(tasks, 1):
        pipeline.append(timed(pipeline_suggest, completer, task))
        naive.append(timed(naive_suggest, engine, limit, task))
        if number % 10 == 0 or number == len(tasks):
            print(f"inline_quality: {number}/{len(tasks)} tasks", file=sys.stderr, flush=True)

    code_changed = len({digest_at_start, digest_after_cli, rules_digest()}) > 1
    check = None
    if cli_answer is not None:
        check = {**cli_answer, "in_process": pipeline[0][0], "same": cli_answer["cli"] == pipeline[0][0]}
    pipeline_figures = summarize(tasks, [a for a, _ in pipeline], [ms for _, ms in pipeline])
    naive_figures = summarize(tasks, [a for a, _ in naive], [ms for _, ms in naive])
    naive_exact = naive_figures["exact_match"]
    ratio = round(pipeline_figures["exact_match"] / naive_exact, 3) if naive_exact else None
    end_load = cpu_class.load_average()
    report: dict[str, Any] = {
        "tasks": len(tasks),
        "seed": args.seed,
        "python": sys.version.split()[0],
        "modules": sorted({task.module for task in tasks}),
        "model": engine.name,
        "weights": engine.loaded.weights,
        "device": bench_device(),
        "torch_threads": torch.get_num_threads(),
        "fim": fim.format.family if (fim := getattr(completer, "fim", None)) is not None else None,
        "max_new_tokens": INLINE_SETTINGS.max_new_tokens,
        "prefix_tokens": limit,
        "pipeline": pipeline_figures,
        "naive": naive_figures,
        "empty_line_parses": round(sum(still_parses(task, "") for task in tasks) / len(tasks), 4),
        "exact_match_ratio": ratio,
        "goal_ratio": GOAL_RATIO,
        "goal_met": ratio is not None and ratio >= GOAL_RATIO,
        "cli_check": check,
        "git_commit": git_commit(),
        "rules_digest": digest_at_start,
        "rules_changed_during_run": code_changed,
        "cpu": machine["cpu"],
        "machine_simd": machine["machine_simd"],
        "load_average": {"start": machine["load_average"], "end": end_load},
        "busy": cpu_class.busy(machine["load_average"], end_load),  # type: ignore[arg-type]
    }
    json.dump(report, sys.stdout)
    print()
    details = [
        {
            "task": f"{task.module}:{task.line}",
            "expected": task.expected,
            "pipeline": first_line(p),
            "pipeline_full": p,
            "naive": n,
            "pipeline_exact": exact_match(task, p),
            "naive_exact": exact_match(task, n),
            "pipeline_parses": still_parses(task, p),
            "naive_parses": still_parses(task, n),
        }
        for task, (p, _), (n, _) in zip(tasks, pipeline, naive, strict=True)
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**report, "per_task": details}, indent=1, ensure_ascii=False) + "\n", "utf-8")
    if check is not None and not check["same"]:
        print("inline_quality: penwright complete printed another suggestion than the in-process call", file=sys.stderr)
        if code_changed:
            print("inline_quality: (the completion code changed on disk during the run)", file=sys.stderr)
        else:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
