"""Start-up of the command line: wall and CPU seconds per call of ``penwright`` commands, measured from launch.

Run: ``HF_HUB_OFFLINE=1 .venv/bin/python bench/startup.py [--rounds N] [--root DIR ...]``; prints one JSON object.

Each round runs every command once from every ``--root`` (a checkout to compare, default: this one), interleaved,
so a busy machine slows all of them alike. ``complete`` is split into phases by the times its progress lines reach
stderr and by its ``--stats``: until the imports start, the imports (torch, transformers, the model's code), loading,
the engine set-up plus exit, and the completion itself. All runs share one profile, so the first (warm-up) run
converts the GGUF and writes the caches.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cpu_class  # bench/ is on sys.path when a bench script runs

REPO = Path(__file__).resolve().parents[1]
PREFIX = '''"""Summaries of CSV measurements."""

import csv
import statistics
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Measurement:
    name: str
    value: float
    unit: str


def read_measurements(path: Path) -> list[Measurement]:
    rows: list[Measurement] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            rows.append(Measurement(row["name"], float(row["value"]), row["unit"]))
    return rows


def mean_value(measurements: list[Measurement]) -> float:
    """The mean of the values."""
'''


def cpu_capability() -> str:
    try:
        import torch

        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:
        return "unknown"


def commands(prefix_file: Path) -> dict[str, list[str]]:
    complete = ["complete", "--mode", "code", "--language", "python", "--prefix-file", str(prefix_file)]
    return {
        "version": ["--version"],
        "complete --help": ["complete", "--help"],
        "models": ["models"],
        "complete": [*complete, "--seed", "1", "--stats"],
    }


def one_call(root: Path, argv: list[str], env: dict[str, str]) -> dict[str, float]:
    """Wall and CPU seconds of one call; for a model command also its phases, timed by its progress lines."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    seen: dict[str, float] = {}
    with (
        tempfile.TemporaryFile() as out,
        subprocess.Popen(
            [sys.executable, "-m", "assistant", *argv], cwd=root, env=env, stdout=out, stderr=subprocess.PIPE, text=True
        ) as process,
    ):
        assert process.stderr is not None
        lines = []
        for line in process.stderr:
            lines.append(line)
            seen.setdefault(line.split(":", 1)[-1].strip().split(" ", 1)[0], time.perf_counter() - started)
        returncode = process.wait()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if returncode != 0:
        raise SystemExit(f"{root}: penwright {' '.join(argv)} failed ({returncode}):\n{''.join(lines)}")
    run = {"wall_s": wall, "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)}
    stats = [line for line in lines if line.startswith("{")]
    if stats and {"Starting", "Loading", "Model"} <= set(seen):
        completion = json.loads(stats[-1])["total_ms"] / 1000
        run |= {
            "until_imports_s": seen["Starting"],  # the interpreter, the CLI, reading the input
            "imports_s": seen["Loading"] - seen["Starting"],  # torch, transformers, the model's code
            "load_s": seen["Model"] - seen["Loading"],  # weights, quantization
            "engine_and_exit_s": wall - seen["Model"] - completion,  # the engine's fast path, shutting down
            "completion_s": completion,
        }
    return run


def summary(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = runs[0].keys()
    return {f"median_{key}": round(statistics.median(run[key] for run in runs), 3) for key in keys} | {
        f"min_{key}": round(min(run[key] for run in runs), 3) for key in ("wall_s", "cpu_s")
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--root", type=Path, action="append", help="a checkout to run (repeat to compare)")
    parser.add_argument("--only", action="append", help="run only these commands (version, models, complete ...)")
    parser.add_argument("--prefix-file", type=Path, default=None, help="the text before the cursor for complete")
    parser.add_argument("--profile", type=Path, default=None, help="settings and caches (default: a new folder)")
    args = parser.parse_args()
    roots = [root.resolve() for root in (args.root or [REPO])]
    prefix_file = args.prefix_file
    if prefix_file is None:
        prefix_file = Path(tempfile.mkdtemp()) / "prefix.py"
        prefix_file.write_text(PREFIX, encoding="utf-8")
    profile = args.profile or Path(tempfile.mkdtemp(prefix="penwright-startup-"))
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONIOENCODING="utf-8", PENWRIGHT_PROFILE=str(profile))
    env.pop("PYTHONPATH", None)  # each root runs its own package
    todo = {name: argv for name, argv in commands(prefix_file).items() if not args.only or name in args.only}
    for root in roots:  # warm-up: the GGUF conversion, the int4 cache and the import cache are made once
        for argv in todo.values():
            one_call(root, argv, env)
    runs: dict[str, dict[str, list[dict[str, float]]]] = {str(root): {name: [] for name in todo} for root in roots}
    for _ in range(args.rounds):
        for name, argv in todo.items():
            for root in roots:
                runs[str(root)][name].append(one_call(root, argv, env))
    print(
        json.dumps(
            {
                "cpu": cpu_class.cpu_model(),
                "cpu_capability": cpu_capability(),
                "cores": os.cpu_count(),
                "load_average": os.getloadavg(),
                "rounds": args.rounds,
                "results": {
                    root: {name: summary(calls) | {"runs": calls} for name, calls in by_name.items()}
                    for root, by_name in runs.items()
                },
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
