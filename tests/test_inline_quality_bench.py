"""The inline-quality benchmark's tasks (bench/inline_quality.py): deterministic and well-formed. No model."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH_SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "inline_quality.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("inline_quality", BENCH_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_tasks_are_deterministic_and_a_smaller_count_is_a_prefix(bench: ModuleType) -> None:
    tasks = bench.extract_tasks(40)
    assert len(tasks) == 40
    assert bench.extract_tasks(40) == tasks
    assert bench.extract_tasks(15) == tasks[:15]
    assert bench.extract_tasks(40, seed=bench.SEED + 1) != tasks
    assert len({task.module for task in tasks}) >= 10  # the modules take turns


def test_each_task_is_the_file_with_one_code_line_cut_out(bench: ModuleType) -> None:
    root = bench.stdlib_root()
    texts: dict[str, str] = {}
    for task in bench.extract_tasks(60):
        text = texts.setdefault(task.module, bench.read_source(root / task.module))
        assert task.prefix + task.expected + task.suffix == text
        original = text.splitlines()[task.line - 1]
        assert task.expected == original.strip() and task.expected
        assert "\n" not in task.expected and len(original) <= bench.MAX_LINE_CHARS
        assert not task.expected.startswith(("#", '"""', "'''"))
        assert task.prefix.endswith("\n" + original[: len(original) - len(original.lstrip())])
        assert task.suffix.startswith("\n")
        assert task.line > bench.MIN_LINES_BEFORE
        assert bench.exact_match(task, "  " + task.expected + " \nnext line")
        assert bench.still_parses(task, task.expected)


def test_candidates_leave_out_comments_docstrings_and_punctuation(bench: ModuleType) -> None:
    head = "".join(f"x{n} = {n}\n" for n in range(bench.MIN_LINES_BEFORE))
    body = (
        "def f(a):\n"  # 20: code
        '    """A docstring\n'  # 21-23: a string over several lines
        "    over lines.\n"
        '    """\n'
        "    # a comment\n"  # 24
        "    b = a + 1  # trailing comment\n"  # 25
        "    c = [\n"  # 26: code
        "    ]\n"  # 27: no letter or digit
        '    "just a string"\n'  # 28
        "\n"  # 29
        f"    d = '{'y' * 90}'\n"  # 30: too long
        "    return b + c\n"  # 31: code
    )
    text = head + body
    ast.parse(text)
    start = bench.MIN_LINES_BEFORE
    assert bench.candidate_lines(text) == [start, start + 6, start + 11]
    task = bench.task_at("m.py", text, start + 11)
    assert (task.prefix[-6:], task.expected, task.suffix) == ("'\n    ", "return b + c", "\n")


def test_scores_read_the_first_line_only(bench: ModuleType) -> None:
    text = "".join(f"x{n} = {n}\n" for n in range(30)) + "if x1:\n    y = 1\n"
    task = bench.task_at("m.py", text, 31)
    assert task.expected == "y = 1"
    assert bench.exact_match(task, "y = 1\n    z = 2")
    assert not bench.exact_match(task, "y = 2")
    assert bench.still_parses(task, "y = 2\nthis is not python(")
    assert not bench.still_parses(task, "y = (")
    assert not bench.still_parses(task, "")  # an empty block body does not parse
