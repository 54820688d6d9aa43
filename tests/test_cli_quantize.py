"""``--quantize`` on the command line: the stats say which weights ran, and a bad choice is a usage error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PYTHON = sys.executable
STORY = "The rain had not stopped for three days when the stranger knocked at the door of the old mill house. " * 2


def penwright(*args: str, env: dict[str, str], stdin: str | None = None, timeout: int = 300):
    data = stdin.encode() if stdin is not None else None
    return subprocess.run(
        [PYTHON, "-m", "assistant", *args], input=data, capture_output=True, env=env, timeout=timeout, check=False
    )


def last_json_line(stderr: bytes) -> dict:
    return json.loads(stderr.decode().strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize(("choice", "weights"), [("int8", "int8"), ("auto", "int4")])
def test_generate_stats_name_the_weights(cli_env, choice: str, weights: str) -> None:
    result = penwright(
        "generate", "--task", "story", "--prompt", STORY, "--quantize", choice, "--max-new-tokens", "12",
        "--seed", "2", "--stats", env=cli_env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip(), "the story goes on"
    stats = last_json_line(result.stderr)
    assert stats["weights"] == weights
    from assistant.engine import native

    step = "fast step (native int4 kernels)" if weights == "int4" and native.library()[0] else "fast step (TorchScript)"
    assert stats["decoding"] == step and stats["notes"] == "", "every self-check passed here"
    assert stats["new_tokens"] > 0 and stats["prompt_tokens"] > 30
    assert f"Preparing {weights} weights" in result.stderr.decode()


@pytest.mark.slow
def test_complete_stats_name_full_precision_weights(cli_env, tmp_path: Path) -> None:
    prefix = tmp_path / "prefix.txt"
    prefix.write_text("The stranger took off his hat and", encoding="utf-8")
    result = penwright(
        "complete", "--mode", "prose", "--prefix-file", str(prefix), "--quantize", "none", "--stats", env=cli_env
    )
    assert result.returncode == 0, result.stderr.decode()
    assert last_json_line(result.stderr)["weights"] == "float32"


def test_unknown_quantization_is_a_usage_error(cli_env) -> None:
    result = penwright("generate", "--task", "story", "--prompt", "x", "--quantize", "bogus", env=cli_env)
    assert result.returncode == 2
    error = result.stderr.decode()
    assert "--quantize" in error and "invalid choice: 'bogus'" in error
    assert all(choice in error for choice in ("auto", "none", "int8", "int4"))
    assert "Traceback" not in error and not result.stdout


@pytest.mark.slow
def test_int8_chat_survives_a_second_run_that_reads_the_weights_cache(cli_env) -> None:
    for run in (1, 2):  # the first run writes the int8 cache (when it is not there yet), the second reads it
        result = penwright(
            "chat", "--quantize", "int8", "--max-new-tokens", "8", "--seed", "1", env=cli_env,
            stdin="My name is Ada.\nWhat is my name?\n",
        )  # fmt: skip
        assert result.returncode == 0, f"run {run} exited with {result.returncode}: {result.stderr.decode()[-300:]}"
        assert result.stdout.decode().count("penwright> ") == 2
