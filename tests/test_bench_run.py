"""bench/run.py stops on a broken part, names it and shows why, instead of charting zeros. No model, no benchmark."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def run() -> ModuleType:
    """bench/run.py as a module; it imports its sibling scripts (cpu_class, device) by their bare names."""
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


def part(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "broken_part.py"
    script.write_text(body, encoding="utf-8")
    return script


def test_a_part_that_crashes_stops_the_run_with_its_name_and_traceback(run: ModuleType, tmp_path: Path) -> None:
    script = part(tmp_path, "print('{\"decode_tok_s\": 0}')\nraise RuntimeError('the kernel exploded')\n")
    with pytest.raises(SystemExit) as stopped:
        run.run_json(script, "--runs", "3")
    message = str(stopped.value.code)
    assert stopped.value.code != 0 and isinstance(stopped.value, run.PartFailed)
    assert "broken_part.py --runs 3 failed (exit status 1)" in message and "nothing written" in message
    assert "RuntimeError: the kernel exploded" in message, "the end of the part's stderr says why"


def test_a_part_that_prints_no_figures_fails(run: ModuleType, tmp_path: Path) -> None:
    script = part(tmp_path, "print('loading the model... done')\n")
    with pytest.raises(run.PartFailed, match="broken_part.py printed no figures"):
        run.run_json(script)


def test_a_part_that_hangs_fails_when_its_time_is_up(run: ModuleType) -> None:
    hang = [sys.executable, "-c", "import sys, time; print('warming up', file=sys.stderr, flush=True); time.sleep(60)"]
    with pytest.raises(run.PartFailed, match="sleeper did not finish in 1 s") as stopped:
        run.run_part("sleeper", hang, timeout=1)
    assert "warming up" in str(stopped.value.code)


def test_a_working_part_gives_its_last_json_line(run: ModuleType, tmp_path: Path) -> None:
    script = part(tmp_path, "print('{\"early\": 1}')\nprint('log line')\nprint('{\"decode_tok_s\": 61.5}')\n")
    assert run.run_json(script) == {"decode_tok_s": 61.5}


def test_the_run_exits_non_zero_and_says_which_part(tmp_path: Path) -> None:
    """What `make bench` sees: exit status 1 and a message naming the part on stderr, as the script runs it."""
    script = part(tmp_path, "raise MemoryError('no room for the KV cache')\n")
    code = f"import run\nrun.run_json({str(script)!r})\nprint('figures written')\n"
    result = subprocess.run([sys.executable, "-c", code], cwd=BENCH, capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "bench: broken_part.py failed" in result.stderr and "MemoryError: no room for the KV cache" in result.stderr
    assert "figures written" not in result.stdout
