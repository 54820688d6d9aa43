"""penwright tune, penwright voices and --voice: refusals said in a sentence before any model loads, and one short
end-to-end run on the real model (tune a few seconds, list the voice, write with it)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from assistant import cli
from tests.engine.test_voices import marsh_text

PYTHON = sys.executable


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(args), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_voices_lists_nothing_yet() -> None:
    code, out, _err = run("voices")
    assert code == 0 and "No voices yet" in out and "penwright tune" in out


def test_tune_refuses_bad_texts_with_a_sentence(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, _out, err = run("tune", "--texts", str(tmp_path / "empty"), "--name", "me")
    assert code == 2 and "holds no .txt or .md files" in err
    short = tmp_path / "short.txt"
    short.write_text("Only a few words here.", encoding="utf-8")
    code, _out, err = run("tune", "--texts", str(short), "--name", "me")
    assert code == 2 and "'short.txt' holds 5 words; a voice needs at least 2,000 words" in err
    binary = tmp_path / "draft.md"
    binary.write_bytes(bytes(range(256)) * 64)
    code, _out, err = run("tune", "--texts", str(binary), "--name", "me")
    assert code == 2 and "draft.md' is a binary file" in err
    huge = tmp_path / "all.txt"
    with huge.open("wb") as handle:
        handle.truncate(200 * 2**20)
    code, _out, err = run("tune", "--texts", str(huge), "--name", "me")
    assert code == 2 and "all.txt' is 200 MB" in err
    code, _out, err = run("tune", "--texts", str(short), "--name", "../me")
    assert code == 2 and "A voice name is" in err
    code, _out, err = run("tune", "--texts", str(short), "--name", "me", "--rank", "0")
    assert code == 2 and "rank must be between 1 and 256" in err


def test_a_voice_is_refused_on_a_remote_server() -> None:
    code, _out, err = run(
        "generate", "--task", "story", "--prompt", "x", "--base-url", "http://127.0.0.1:9/v1", "--voice", "me"
    )
    assert code == 2 and "--voice runs on this computer's model" in err


@pytest.mark.slow  # child processes load the real model
def test_tune_then_list_then_write_in_the_voice(cli_env: dict[str, str], tmp_path: Path) -> None:
    texts = tmp_path / "chapters"
    texts.mkdir()
    (texts / "marsh.txt").write_text(marsh_text(), encoding="utf-8")
    env = dict(cli_env, PENWRIGHT_PROFILE=str(tmp_path / "profile"))
    # the conversion cache of the session's profile, so the child does not convert the GGUF again
    shared_cache = Path(cli_env["PENWRIGHT_PROFILE"]) / "cache"
    shared_cache.mkdir(parents=True, exist_ok=True)
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile" / "cache").symlink_to(shared_cache)

    def penwright(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, "-m", "assistant", *args], capture_output=True, text=True, env=env, timeout=300, check=False
        )

    tuned = penwright("tune", "--texts", str(texts), "--name", "marsh", "--minutes", "0.25")
    assert tuned.returncode == 0, tuned.stderr
    assert "saved the voice 'marsh'" in tuned.stderr and "held-out perplexity" in tuned.stderr
    assert (Path(tuned.stdout.strip()) / "adapter_model.safetensors").is_file()
    listed = penwright("voices")
    assert listed.returncode == 0 and listed.stdout.startswith("marsh: 3,")
    again = penwright("tune", "--texts", str(texts), "--name", "marsh")
    assert again.returncode == 2 and "exists already" in again.stderr
    written = penwright(
        "generate", "--task", "story", "--prompt", "Verily,", "--voice", "marsh", "--max-new-tokens", "8", "--seed", "1"
    )
    assert written.returncode == 0, written.stderr
    assert written.stdout.strip()
    missing = penwright("generate", "--task", "story", "--prompt", "Verily,", "--voice", "fog")
    assert missing.returncode == 3 and "There is no voice named 'fog'" in missing.stderr
