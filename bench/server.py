"""``penwright serve`` against the engine in-process, in the same run: decode speed, time to first token, and
``penwright complete``-style latency through the server against a new process per call.

Run: ``HF_HUB_OFFLINE=1 .venv/bin/python bench/server.py [--rounds N] [--tokens N] [--calls N]``; writes
``bench/results/server.json`` and prints it.

The server is the real command (``python -m assistant serve --port 0``) in its own process, as an editor would use
it, and the client is the official ``openai`` package; the in-process figures come from an engine loaded in this
process and run on a worker thread, as the app runs it. Rounds alternate (engine, server, engine, server ...), so a
machine that gets busier slows both alike, and the medians are compared. Tokens/s is measured where the text
arrives: for the server, from the first streamed chunk to the last, over the ``usage.completion_tokens`` the server
reports; for the engine, from the first piece to the last. Each round's prompt starts differently, so neither side
reuses a KV cache for the time to first token.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cpu_class  # bench/ is on sys.path when a bench script runs

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "server.json"
STORY = Path(__file__).with_name("data") / "story.txt"
CODE_PREFIX = '''"""Summaries of CSV measurements."""

import csv
import statistics
from pathlib import Path


def read_values(path: Path) -> list[float]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [float(row["value"]) for row in csv.DictReader(handle)]


def mean_value(values: list[float]) -> float:
    """The mean of the values."""
'''
CODE_SUFFIX = "\n\ndef main() -> None:\n    print(mean_value(read_values(Path('data.csv'))))\n"


def story_prompt(round_number: int) -> str:
    """A different first line each round (no KV reuse), then the same long story text."""
    return f"Chapter {round_number + 2}.\n\n" + STORY.read_text(encoding="utf-8")[:1500]


def start_server(env: dict[str, str]) -> tuple[subprocess.Popen[str], str, float]:
    """``penwright serve`` on a free port; returns the process, its base URL and the seconds until it answered."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "assistant", "serve", "--port", "0"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"at (http://\S+/v1)", line)
    if not match:
        process.kill()
        errors = process.stderr.read() if process.stderr else ""
        raise SystemExit(f"bench: penwright serve did not start: {line!r} {errors[-2000:]}")
    threading.Thread(target=process.stdout.read, daemon=True).start()
    return process, match.group(1), time.perf_counter() - started


def engine_run(engine: Any, prompt: str, tokens: int) -> dict[str, float]:
    """One generation on the engine, timed where the pieces arrive (call it on the model's worker thread)."""
    from assistant.core.prompts import Prompt
    from assistant.core.settings import SamplerSettings

    settings = SamplerSettings(temperature=0, max_new_tokens=tokens)
    started = time.perf_counter()
    stream = engine.stream(Prompt(text=prompt), settings)
    first = last = 0.0
    for _piece in stream:
        last = time.perf_counter()
        first = first or last
    made = stream.stats.new_tokens
    return {
        "ttft_ms": (first - started) * 1000,
        "tok_s": (made - 1) / (last - first),
        "tokens": made,
    }


def server_run(client: Any, model: str, prompt: str, tokens: int) -> dict[str, float]:
    started = time.perf_counter()
    stream = client.completions.create(
        model=model,
        prompt=prompt,
        max_tokens=tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    first = last = 0.0
    made = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].text:
            last = time.perf_counter()
            first = first or last
        if chunk.usage is not None:
            made = chunk.usage.completion_tokens
    return {"ttft_ms": (first - started) * 1000, "tok_s": (made - 1) / (last - first), "tokens": made}


def own_cpu_s() -> float:
    """CPU seconds of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_s(pid: int) -> float:
    """CPU seconds of another process, all threads (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def complete_calls(client: Any, model: str, calls: int, env: dict[str, str]) -> dict[str, Any]:
    """The same cursor positions through the server and through ``penwright complete`` (a new process each)."""
    lines = CODE_PREFIX.splitlines(keepends=True)
    cursors = ["".join(lines[: len(lines) - offset]) for offset in range(calls)]
    through_server: list[float] = []
    new_process: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        suffix_file = Path(folder) / "suffix.py"
        suffix_file.write_text(CODE_SUFFIX, encoding="utf-8")
        for index, prefix in enumerate(cursors):
            started = time.perf_counter()
            client.completions.create(model=model, prompt=prefix, suffix=CODE_SUFFIX)
            through_server.append(time.perf_counter() - started)
            prefix_file = Path(folder) / f"prefix{index}.py"
            prefix_file.write_text(prefix, encoding="utf-8")
            command = [sys.executable, "-m", "assistant", "complete", "--mode", "code", "--language", "python",
                       "--prefix-file", str(prefix_file), "--suffix-file", str(suffix_file)]  # fmt: skip
            started = time.perf_counter()
            subprocess.run(command, cwd=REPO, env=env, capture_output=True, check=True)
            new_process.append(time.perf_counter() - started)
    return {
        "calls": calls,
        "through_server_ms": [round(value * 1000, 1) for value in through_server],
        "new_process_ms": [round(value * 1000, 1) for value in new_process],
        "through_server_median_ms": round(statistics.median(through_server) * 1000, 1),
        "new_process_median_s": round(statistics.median(new_process), 2),
        "speedup": round(statistics.median(new_process) / statistics.median(through_server), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    import openai

    from assistant.core.prompts import Prompt
    from assistant.engine import import_libraries
    from assistant.engine.generate import Engine
    from assistant.engine.models import load_model

    load_before = cpu_class.load_average()
    import_libraries()  # as every penwright command does before loading (the server too): same GC settings
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONIOENCODING="utf-8")
    engine = Engine(load_model(device="cpu"))  # converts the GGUF once, before the server process needs it
    # The in-process engine runs on one worker thread of its own, as the app's worker and the server's run theirs:
    # on a busy 2-core machine the same ATen calls ran up to 2x slower from the main thread than from another one,
    # which would otherwise be counted as the cost of HTTP.
    model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-model")
    process, url, server_start_s = start_server(env)
    try:
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=600)
        model = client.models.list().data[0].id
        model_thread.submit(engine_run, engine, story_prompt(-1), 16).result()  # warm-up: caches, kernels
        server_run(client, model, story_prompt(-1), 16)
        engine_rounds: list[dict[str, float]] = []
        server_rounds: list[dict[str, float]] = []
        for round_number in range(args.rounds):
            prompt = story_prompt(round_number)
            before = own_cpu_s()
            engine_rounds.append(model_thread.submit(engine_run, engine, prompt, args.tokens).result())
            engine_rounds[-1]["cpu_ms_per_token"] = (own_cpu_s() - before) * 1000 / engine_rounds[-1]["tokens"]
            time.sleep(0.5)  # let the other process's idle threads stop spinning
            before, server_before = own_cpu_s(), process_cpu_s(process.pid)
            server_rounds.append(server_run(client, model, prompt, args.tokens))
            made = server_rounds[-1]["tokens"]
            server_rounds[-1]["client_cpu_ms_per_token"] = (own_cpu_s() - before) * 1000 / made
            server_rounds[-1]["cpu_ms_per_token"] = (process_cpu_s(process.pid) - server_before) * 1000 / made
            time.sleep(0.5)
        calls = complete_calls(client, model, args.calls, env)
    finally:
        model_thread.shutdown()
        process.terminate()
        process.wait(timeout=60)

    def median(rounds: list[dict[str, float]], key: str) -> float:
        return statistics.median(entry[key] for entry in rounds)

    load_after = cpu_class.load_average()
    figures: dict[str, Any] = {
        "machine": {
            "cpu": cpu_class.cpu_model(),
            "cores": os.cpu_count(),
            "torch_cpu_capability": cpu_class.torch_capability(),
            "load_average_before": load_before,
            "load_average_after": load_after,
            "busy": cpu_class.busy(load_before, load_after),
            "date": time.strftime("%Y-%m-%d %H:%M"),
        },
        "model": model,
        "weights": engine.loaded.weights,
        "decoding": engine.decode_path,
        "rounds": args.rounds,
        "tokens_per_round": args.tokens,
        "prompt_tokens": len(engine.encode(Prompt(text=story_prompt(0)))),
        "engine_tok_s": round(median(engine_rounds, "tok_s"), 2),
        "server_tok_s": round(median(server_rounds, "tok_s"), 2),
        "server_vs_engine": round(median(server_rounds, "tok_s") / median(engine_rounds, "tok_s"), 3),
        # CPU time per token (all threads; the server's process, and the client's separately): what the HTTP path
        # costs, independent of how a busy machine's scheduler shares the cores out.
        "engine_cpu_ms_per_token": round(median(engine_rounds, "cpu_ms_per_token"), 2),
        "server_cpu_ms_per_token": round(median(server_rounds, "cpu_ms_per_token"), 2),
        "client_cpu_ms_per_token": round(median(server_rounds, "client_cpu_ms_per_token"), 2),
        "engine_vs_server_cpu": round(
            median(engine_rounds, "cpu_ms_per_token")
            / (median(server_rounds, "cpu_ms_per_token") + median(server_rounds, "client_cpu_ms_per_token")),
            3,
        ),
        "engine_ttft_ms": round(median(engine_rounds, "ttft_ms"), 1),
        "server_ttft_ms": round(median(server_rounds, "ttft_ms"), 1),
        "server_start_s": round(server_start_s, 2),
        "engine_rounds": [{key: round(value, 2) for key, value in entry.items()} for entry in engine_rounds],
        "server_rounds": [{key: round(value, 2) for key, value in entry.items()} for entry in server_rounds],
        "complete": calls,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
