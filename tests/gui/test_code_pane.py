"""The code pane as a programmer uses it: line numbers, colours, and every AI action with its undo behaviour.

Most tests drive a fake model (fast, predictable words); the last ones run the real bundled model end to end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QComboBox, QLabel, QPlainTextEdit, QPushButton, QWidget

from assistant.core.errors import ModelError
from assistant.core.prompts import CodeRequest
from assistant.core.settings import AppSettings, SamplerSettings
from assistant.gui.panes.code import CodePane
from assistant.gui.worker import AiClient

pytestmark = pytest.mark.gui

WAIT_MS = 5000


# --- helpers ---------------------------------------------------------------------------------------------------


@pytest.fixture
def pane(qtbot, fake_client: AiClient, app_settings: AppSettings) -> Iterator[CodePane]:
    code_pane = CodePane(fake_client, app_settings)
    qtbot.addWidget(code_pane)
    code_pane.resize(900, 700)
    code_pane.show()
    qtbot.waitExposed(code_pane)
    yield code_pane
    code_pane.close()


def child(pane: CodePane, kind: type, name: str) -> QWidget:
    found = pane.findChild(kind, name)
    assert found is not None, name
    return found


def button(pane: CodePane, name: str) -> QPushButton:
    found = child(pane, QPushButton, name)
    assert isinstance(found, QPushButton)
    return found


def message(pane: CodePane) -> str:
    label = child(pane, QLabel, "codeMessage")
    assert isinstance(label, QLabel)
    return label.text()


def diff_text(pane: CodePane) -> str:
    view = child(pane, QPlainTextEdit, "codeFixView")
    assert isinstance(view, QPlainTextEdit)
    return view.toPlainText()


def put_cursor(pane: CodePane, position: int) -> None:
    cursor = pane.editor.textCursor()
    cursor.setPosition(position)
    pane.editor.setTextCursor(cursor)


def select(pane: CodePane, fragment: str) -> None:
    """Select the first occurrence of ``fragment``, as a user would with the mouse."""
    start = pane.editor.toPlainText().index(fragment)
    cursor = pane.editor.textCursor()
    cursor.setPosition(start)
    cursor.setPosition(start + len(fragment), QTextCursor.MoveMode.KeepAnchor)
    pane.editor.setTextCursor(cursor)


def run_until_idle(qtbot, pane: CodePane, start: Callable[[], None], timeout: int = WAIT_MS) -> None:
    """Run ``start()`` and wait until the pane's job has ended."""
    with qtbot.waitSignal(pane.busyChanged, timeout=timeout, check_params_cb=lambda busy: not busy):
        start()


def format_at(pane: CodePane, line: int, column: int) -> QTextCharFormat | None:
    """The highlighting format on one character, as the highlighter left it in the line's layout."""
    block = pane.editor.document().findBlockByNumber(line)
    layout = block.layout()
    assert layout is not None
    ranges = layout.formats()
    for format_range in ranges:
        if format_range.start <= column < format_range.start + format_range.length:
            return QTextCharFormat(format_range.format)  # a copy: the range's own format dies with the list
    return None


def colour_at(pane: CodePane, line: int, column: int) -> str | None:
    char_format = format_at(pane, line, column)
    return char_format.foreground().color().name() if char_format is not None else None


def flush_worker(qtbot, client: AiClient) -> None:
    """Wait until the worker has finished everything queued before now (it runs one job at a time, in order)."""
    probe = client.start(CodeRequest("x = 1"), SamplerSettings(max_new_tokens=1))
    with qtbot.waitSignal(probe.finished, timeout=WAIT_MS):
        pass


# --- the editor ------------------------------------------------------------------------------------------------


def test_line_number_gutter_grows_with_the_line_count_and_shows_numbers(qtbot, pane: CodePane) -> None:
    gutter = pane.editor.line_number_area
    pane.editor.setPlainText("\n".join(f"line {number}" for number in range(9)))
    narrow = gutter.width()
    pane.editor.setPlainText("\n".join(f"line {number}" for number in range(12000)))
    qtbot.waitUntil(lambda: gutter.width() > narrow, timeout=WAIT_MS)
    assert pane.editor.viewportMargins().left() == gutter.width(), "the text starts right after the gutter"

    image = gutter.grab().toImage()
    background = image.pixelColor(1, image.height() - 2)
    inked = sum(
        1
        for x in range(image.width())
        for y in range(0, min(image.height(), 80))
        if image.pixelColor(x, y) != background
    )
    assert inked > 20, "line numbers are painted in the gutter"


def type_lines(qtbot, pane: CodePane, text: str) -> None:
    """Type as a programmer does: each line break with the Return key, nothing indented by hand."""
    for number, line in enumerate(text.split("\n")):
        if number:
            qtbot.keyClick(pane.editor, Qt.Key.Key_Return)
        if line:
            qtbot.keyClicks(pane.editor, line)


def cursor_column(pane: CodePane) -> int:
    return pane.editor.textCursor().positionInBlock()


def test_enter_after_a_python_block_opener_indents_one_level(qtbot, pane: CodePane) -> None:
    pane.set_file_name("fib.py")
    pane.editor.setFocus()
    qtbot.keyClicks(pane.editor, "def fibonacci(n):")
    qtbot.keyClick(pane.editor, Qt.Key.Key_Return)
    assert pane.editor.toPlainText() == "def fibonacci(n):\n    "
    assert cursor_column(pane) == 4, "the body starts one level in, not at column 0"

    type_lines(qtbot, pane, "if n < 2:  # the first two\nreturn n\nreturn fibonacci(n - 1) + fibonacci(n - 2)")

    assert pane.editor.toPlainText() == (
        "def fibonacci(n):\n"
        "    if n < 2:  # the first two\n"
        "        return n\n"  # a colon before a comment still opens a block
        "    return fibonacci(n - 1) + fibonacci(n - 2)"  # after return the block is over
    )


def test_enter_keeps_the_indentation_and_tab_inserts_spaces(qtbot, pane: CodePane) -> None:
    pane.set_file_name("f.py")
    pane.editor.setFocus()
    type_lines(qtbot, pane, "def f():\nx = 1\ny = 2")
    qtbot.keyClick(pane.editor, Qt.Key.Key_Tab)
    qtbot.keyClicks(pane.editor, "# two")
    assert pane.editor.toPlainText() == "def f():\n    x = 1\n    y = 2   # two", "Tab goes to the next tab stop"
    assert pane.editor.font().fixedPitch()


def test_brackets_open_and_close_indented_blocks_in_c_like_code(qtbot, pane: CodePane) -> None:
    pane.set_file_name("app.js")
    pane.editor.setFocus()
    typed = "function total(values) {\nlet sum = 0;\nfor (const v of values) {\nsum += v;\n}\nreturn [\nsum,\n]\n}"
    type_lines(qtbot, pane, typed)
    assert pane.editor.toPlainText() == (
        "function total(values) {\n"
        "    let sum = 0;\n"
        "    for (const v of values) {\n"
        "        sum += v;\n"
        "    }\n"  # a closing bracket lines up with the line that opened it
        "    return [\n"
        "        sum,\n"
        "    ]\n"
        "}"
    )


def test_enter_between_brackets_puts_the_closer_on_its_own_line(qtbot, pane: CodePane) -> None:
    pane.set_file_name("main.c")
    pane.editor.setPlainText("int main(void) {}")
    put_cursor(pane, len("int main(void) {"))
    pane.editor.setFocus()
    qtbot.keyClick(pane.editor, Qt.Key.Key_Return)
    qtbot.keyClicks(pane.editor, "return 0;")
    assert pane.editor.toPlainText() == "int main(void) {\n    return 0;\n}"
    pane.editor.undo()
    pane.editor.undo()
    assert pane.editor.toPlainText() == "int main(void) {}", "the line break is one undo step"


def test_backspace_in_the_indentation_takes_back_one_level(qtbot, pane: CodePane) -> None:
    pane.set_file_name("f.py")
    pane.editor.setPlainText("if x:\n        ")
    put_cursor(pane, len(pane.editor.toPlainText()))
    pane.editor.setFocus()
    qtbot.keyClick(pane.editor, Qt.Key.Key_Backspace)
    assert pane.editor.toPlainText() == "if x:\n    "
    qtbot.keyClicks(pane.editor, "  ")
    qtbot.keyClick(pane.editor, Qt.Key.Key_Backspace)
    assert pane.editor.toPlainText() == "if x:\n    ", "back to the tab stop"
    qtbot.keyClicks(pane.editor, "y = 1")
    qtbot.keyClick(pane.editor, Qt.Key.Key_Backspace)
    assert pane.editor.toPlainText() == "if x:\n    y = ", "after code, Backspace deletes one character"


def test_plain_text_gets_no_block_rules_but_keeps_the_indentation(qtbot, pane: CodePane) -> None:
    pane.set_file_name("notes.txt")
    pane.editor.setFocus()
    type_lines(qtbot, pane, "Remember:")
    qtbot.keyClicks(pane.editor, "")
    qtbot.keyClick(pane.editor, Qt.Key.Key_Return)
    assert pane.editor.toPlainText() == "Remember:\n", "a colon opens no block outside Python"


def test_tab_on_several_lines_indents_them_and_shift_tab_dedents(qtbot, pane: CodePane) -> None:
    pane.editor.setPlainText("a = 1\nb = 2\nc = 3")
    select(pane, "a = 1\nb")
    qtbot.keyClick(pane.editor, Qt.Key.Key_Tab)
    assert pane.editor.toPlainText() == "    a = 1\n    b = 2\nc = 3"
    qtbot.keyClick(pane.editor, Qt.Key.Key_Backtab)
    assert pane.editor.toPlainText() == "a = 1\nb = 2\nc = 3"
    pane.editor.undo()
    assert pane.editor.toPlainText() == "    a = 1\n    b = 2\nc = 3", "each indent change is one undo step"


def test_font_settings_reach_the_editor_and_the_gutter(pane: CodePane) -> None:
    pane.editor.setPlainText("x = 1\n" * 20)
    small_gutter = pane.editor.line_number_area.width()
    pane.apply_settings(AppSettings(editor_font_family="DejaVu Sans Mono", editor_font_size=24))
    assert pane.editor.font().family() == "DejaVu Sans Mono"
    assert pane.editor.font().pointSize() == 24
    assert pane.editor.line_number_area.width() > small_gutter, "bigger digits need a wider gutter"


@pytest.mark.parametrize(
    ("file_name", "code", "language"),
    [
        ("app.js", "const answer = 42;", "JavaScript"),
        ("app.ts", "let answer: number = 42;", "TypeScript"),
        ("main.c", "int main(void) { return 0; }", "C"),
        ("main.cpp", "int main() { return 0; }", "C++"),
        ("main.go", "package main", "Go"),
        ("Main.java", "public class Main {}", "Java"),
        ("index.html", "<div class='a'>hi</div>", "HTML"),
        ("style.css", "body { color: red; }", "CSS"),
        ("data.json", '{"answer": 42}', "JSON"),
        ("README.md", "# Title", "Markdown"),
        ("run.sh", "echo hello", "Bash"),
        ("query.sql", "SELECT name FROM users;", "SQL"),
    ],
)
def test_common_languages_are_highlighted(pane: CodePane, file_name: str, code: str, language: str) -> None:
    pane.set_file_name(file_name)
    pane.editor.setPlainText(code)
    assert pane.language_name() == language
    assert colour_at(pane, 0, 0) is not None or colour_at(pane, 0, 1) is not None


def test_python_keywords_and_strings_get_different_colours(pane: CodePane) -> None:
    pane.set_file_name("greet.py")
    pane.editor.setPlainText('def greet():\n    return "hello"\n')
    keyword = colour_at(pane, 1, len("    re"))
    string = colour_at(pane, 1, len('    return "he'))
    plain_space = format_at(pane, 1, 1)
    assert keyword is not None and string is not None
    assert keyword != string
    assert plain_space is None, "indentation stays in the editor's own colour"
    assert pane.language_name() == "Python"


def test_a_docstring_keeps_its_colour_on_every_line(pane: CodePane) -> None:
    pane.set_file_name("doc.py")
    pane.editor.setPlainText('def f():\n    """First line.\n    return if class def\n    """\n    return 1\n')
    docstring = colour_at(pane, 1, 6)
    assert colour_at(pane, 2, len("    ret")) == docstring, "keywords inside a docstring are still docstring"
    assert colour_at(pane, 4, len("    ret")) != docstring, "after the closing quotes, code is code again"


def test_language_follows_the_file_name_and_the_language_box(pane: CodePane) -> None:
    box = child(pane, QComboBox, "codeLanguage")
    assert isinstance(box, QComboBox)
    pane.editor.setPlainText('fn main() {\n    let name = "world";\n}\n')
    pane.set_file_name("main.rs")
    assert pane.language_name() == "Rust"
    assert box.currentText() == "Auto (Rust)"
    rust_keyword = colour_at(pane, 0, 0)
    assert rust_keyword is not None, "'fn' is coloured as a Rust keyword"

    box.setCurrentIndex(box.findText("Go"))
    assert pane.language_name() == "Go"

    pane.set_file_name("script.py")
    assert box.currentIndex() == 0, "a new file goes back to Auto"
    assert pane.language_name() == "Python"


def test_auto_guesses_the_language_of_unnamed_code(qtbot, pane: CodePane) -> None:
    pane.editor.setPlainText("import os\n\n\ndef main():\n    print(os.getcwd())\n")
    qtbot.waitUntil(lambda: pane.language_name() == "Python", timeout=WAIT_MS)
    assert colour_at(pane, 0, 0) is not None, "the guessed language is highlighted"


def test_typing_in_a_5000_line_file_rehighlights_only_the_edited_line(qtbot, pane: CodePane) -> None:
    pane.set_file_name("big.py")
    function = 'def function_{n}(value: int) -> int:\n    """Twice the value."""\n    return value * 2  # n\n\n'
    started = time.perf_counter()
    pane.editor.setPlainText("".join(function.format(n=n) for n in range(1250)))
    loaded_in = time.perf_counter() - started
    assert pane.editor.blockCount() > 5000
    assert loaded_in < 10, f"highlighting 5,000 lines took {loaded_in:.1f} s"

    pane.highlighter.blocks_highlighted = 0
    block = pane.editor.document().findBlockByNumber(2502)
    assert block.text() == "    return value * 2  # n"
    put_cursor(pane, block.position() + len("    return value"))
    pane.editor.setFocus()
    started = time.perf_counter()
    qtbot.keyClicks(pane.editor, " + 1")
    typed_in = time.perf_counter() - started
    assert pane.highlighter.blocks_highlighted <= 8, "each keystroke lexes its own line, not the file"
    assert typed_in < 2
    assert "return value + 1 * 2" in pane.editor.toPlainText()


# --- Complete at cursor ----------------------------------------------------------------------------------------


def test_complete_at_cursor_streams_the_answer_in_and_one_undo_removes_it(qtbot, pane: CodePane, fake_session) -> None:
    before, after = "def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n"
    pane.set_file_name("add.py")
    pane.editor.setPlainText(before + after)
    put_cursor(pane, len(before))
    chunks: list[str] = []
    pane.editor.textChanged.connect(lambda: chunks.append(pane.editor.toPlainText()))

    run_until_idle(qtbot, pane, pane.complete_at_cursor)

    answer = "".join(fake_session.words).rstrip()
    assert pane.editor.toPlainText() == before + answer + after
    assert pane.editor.textCursor().position() == len(before + answer), "the cursor ends after the completion"
    assert len(set(chunks)) > 2, "the answer appeared as it streamed"
    request = fake_session.requests[-1]
    assert isinstance(request, CodeRequest)
    assert (request.mode, request.code, request.language) == ("complete", before, "python")
    assert not pane.editor.isReadOnly()

    pane.editor.undo()
    assert pane.editor.toPlainText() == before + after, "one undo removes the whole completion"
    assert not pane.editor.document().isModified()


def test_completion_ends_where_the_code_leaves_the_cursors_block(qtbot, pane: CodePane, fake_session) -> None:
    fake_session.words = ["a + b\n", "    # still inside\n", "\n", "print('outside')\n", "x = 1\n"]
    before = "def add(a, b):\n    return "
    pane.editor.setPlainText(before)
    put_cursor(pane, len(before))

    run_until_idle(qtbot, pane, pane.complete_at_cursor)

    assert pane.editor.toPlainText() == before + "a + b\n    # still inside"


def test_stop_keeps_what_was_written_and_nothing_more_arrives(qtbot, fake_client, fake_session) -> None:
    settings = AppSettings(sampler=SamplerSettings(max_new_tokens=2000))
    pane = CodePane(fake_client, settings)
    qtbot.addWidget(pane)
    pane.show()
    fake_session.words = [f"w{index} " for index in range(2000)]
    pane.editor.setPlainText("values = ")
    put_cursor(pane, len("values = "))
    pane.complete_at_cursor()
    stop = button(pane, "codeStop")
    assert stop.isEnabled()
    qtbot.waitUntil(lambda: "w3" in pane.editor.toPlainText(), timeout=WAIT_MS)

    stop.click()
    written = pane.editor.toPlainText()
    flush_worker(qtbot, fake_client)

    assert pane.editor.toPlainText() == written, "no text lands after Stop"
    assert "w1999" not in written
    assert not stop.isEnabled() and not pane.busy and not pane.editor.isReadOnly()
    pane.editor.undo()
    assert pane.editor.toPlainText() == "values = ", "what was written is still one undo step"
    pane.close()


def test_loading_other_text_stops_the_insertion(qtbot, fake_client, fake_session) -> None:
    settings = AppSettings(sampler=SamplerSettings(max_new_tokens=2000))
    pane = CodePane(fake_client, settings)
    qtbot.addWidget(pane)
    fake_session.words = [f"w{index} " for index in range(2000)]
    pane.editor.setPlainText("values = ")
    put_cursor(pane, len("values = "))
    pane.complete_at_cursor()
    qtbot.waitUntil(lambda: "w2" in pane.editor.toPlainText(), timeout=WAIT_MS)

    with qtbot.waitSignal(pane.busyChanged, timeout=WAIT_MS, check_params_cb=lambda busy: not busy):
        pane.editor.setPlainText("print('another file')\n")
    flush_worker(qtbot, fake_client)

    assert pane.editor.toPlainText() == "print('another file')\n", "no stale text lands in the new text"
    assert "changed" in message(pane)
    pane.close()


def test_a_new_action_discards_the_running_jobs_text(qtbot, fake_client, fake_session) -> None:
    settings = AppSettings(sampler=SamplerSettings(max_new_tokens=2000))
    pane = CodePane(fake_client, settings)
    qtbot.addWidget(pane)
    pane.show()
    fake_session.words = [f"old{index} " for index in range(2000)]
    pane.editor.setPlainText("items = ")
    put_cursor(pane, len("items = "))
    pane.complete_at_cursor()
    qtbot.waitUntil(lambda: "old2" in pane.editor.toPlainText(), timeout=WAIT_MS)

    fake_session.words = ["new "]
    stale_words = pane.editor.toPlainText().count("old")
    run_until_idle(qtbot, pane, pane.complete_at_cursor)
    flush_worker(qtbot, fake_client)

    text = pane.editor.toPlainText()
    assert text.count("old") == stale_words, "the replaced job wrote nothing more"
    assert text.endswith("new")
    pane.close()


# --- Explain, Generate ----------------------------------------------------------------------------------------


def test_explain_sends_the_selection_and_its_language(qtbot, pane: CodePane, fake_session) -> None:
    pane.set_file_name("calc.py")
    pane.editor.setPlainText("def add(a, b):\n    return a + b\n")
    select(pane, "return a + b")

    with qtbot.waitSignal(pane.explainRequested, timeout=WAIT_MS) as explained:
        pane.explain_action.trigger()

    assert explained.args == ["return a + b", "Python"]
    assert fake_session.requests == [], "the chat pane does the explaining, not this pane"


def test_generate_inserts_the_fenced_code_below_the_comment(qtbot, pane: CodePane, fake_session) -> None:
    fake_session.words = [
        "Here is the code:\n",
        "```python\n",
        "def add(a, b):\n",
        "    return a + b\n",
        "```\n",
        "It adds two numbers.",
    ]
    original = "# add two numbers\nprint('done')\n"
    pane.set_file_name("gen.py")
    pane.editor.setPlainText(original)
    put_cursor(pane, 3)

    run_until_idle(qtbot, pane, pane.generate_action.trigger)

    assert pane.editor.toPlainText() == "# add two numbers\ndef add(a, b):\n    return a + b\nprint('done')\n"
    request = fake_session.requests[-1]
    assert isinstance(request, CodeRequest)
    assert (request.mode, request.code) == ("generate", "# add two numbers")
    pane.editor.undo()
    assert pane.editor.toPlainText() == original, "one undo removes the generated code"


def test_generated_code_is_indented_like_its_comment(qtbot, pane: CodePane, fake_session) -> None:
    fake_session.words = ["total = sum(values)\n", "return total\n"]  # an answer without a fence is all code
    pane.editor.setPlainText("def total(values):\n    # sum the values\n")
    put_cursor(pane, len("def total(values):\n    # sum"))

    run_until_idle(qtbot, pane, pane.generate_from_comment)

    assert pane.editor.toPlainText() == (
        "def total(values):\n    # sum the values\n    total = sum(values)\n    return total\n"
    )


# --- Fix -------------------------------------------------------------------------------------------------------

FIX_ANSWER = ["The bug is the minus.\n", "```python\n", "def add(a, b):\n", "    return a + b\n", "```\n"]
BUGGY = "def add(a, b):\n    return a - b\n"


def test_fix_shows_a_diff_and_accept_applies_it_as_one_undo_step(qtbot, pane: CodePane, fake_session) -> None:
    fake_session.words = list(FIX_ANSWER)
    pane.set_file_name("add.py")
    pane.editor.setPlainText(BUGGY)
    error_input = child(pane, QPlainTextEdit, "codeErrorInput")
    assert isinstance(error_input, QPlainTextEdit)
    error_input.setPlainText("add(2, 3) returned -1")

    run_until_idle(qtbot, pane, pane.fix_action.trigger)

    assert child(pane, QWidget, "codeFixPanel").isVisible()
    diff = diff_text(pane)
    assert "-    return a - b" in diff and "+    return a + b" in diff
    assert pane.editor.toPlainText() == BUGGY, "nothing changes before Accept"
    request = fake_session.requests[-1]
    assert isinstance(request, CodeRequest)
    assert (request.mode, request.code, request.error) == ("fix", BUGGY, "add(2, 3) returned -1")

    button(pane, "codeFixAccept").click()
    assert pane.editor.toPlainText() == "def add(a, b):\n    return a + b\n"
    assert not child(pane, QWidget, "codeFixPanel").isVisible()
    pane.editor.undo()
    assert pane.editor.toPlainText() == BUGGY, "one undo brings the old code back"


def test_fix_of_a_selection_replaces_only_the_selection(qtbot, pane: CodePane, fake_session) -> None:
    fake_session.words = ["```\n", "return a + b\n", "```"]
    text = "def add(a, b):\n    return a - b\n\nprint(add(2, 3))\n"
    pane.editor.setPlainText(text)
    select(pane, "    return a - b\n")

    run_until_idle(qtbot, pane, pane.fix_code)
    button(pane, "codeFixAccept").click()

    assert pane.editor.toPlainText() == text.replace("a - b", "a + b"), "indentation and the rest are kept"


def test_discarding_a_fix_leaves_text_undo_stack_and_modified_flag_alone(qtbot, pane: CodePane, fake_session) -> None:
    fake_session.words = list(FIX_ANSWER)
    document = pane.editor.document()
    pane.editor.setPlainText(BUGGY)
    undo_steps, modified = document.availableUndoSteps(), document.isModified()

    run_until_idle(qtbot, pane, pane.fix_code)
    assert child(pane, QWidget, "codeFixPanel").isVisible()
    button(pane, "codeFixDiscard").click()

    assert not child(pane, QWidget, "codeFixPanel").isVisible()
    assert pane.editor.toPlainText() == BUGGY
    assert document.availableUndoSteps() == undo_steps
    assert document.isModified() == modified


def test_a_failing_model_shows_its_error_and_changes_nothing(qtbot, pane: CodePane, fake_session) -> None:
    fake_session.fail_with = ModelError("Not enough memory to generate this answer.")
    pane.editor.setPlainText(BUGGY)
    put_cursor(pane, len(BUGGY))

    with qtbot.waitSignal(pane.statusMessage, timeout=WAIT_MS, check_params_cb=lambda text: "memory" in text):
        pane.complete_at_cursor()

    assert "Not enough memory" in message(pane)
    assert pane.editor.toPlainText() == BUGGY
    assert not pane.editor.document().isUndoAvailable()
    assert not pane.editor.document().isModified()
    assert not pane.busy and not pane.editor.isReadOnly()
    assert not child(pane, QWidget, "codeFixPanel").isVisible()


def test_the_actions_carry_their_shortcuts(pane: CodePane) -> None:
    shortcuts = {action.text(): action.shortcut().toString() for action in pane.pane_actions()}
    assert shortcuts == {
        "Complete at Cursor": "Ctrl+Shift+Space",
        "Explain Selection": "Ctrl+Shift+X",
        "Generate from Comment": "Ctrl+Shift+G",
        "Fix Code": "Ctrl+Shift+F",
        "Suggest now": "Ctrl+Space",
        "Automatic suggestions": "Ctrl+Shift+I",
    }
    assert pane.menu_title == "Code" and pane.objectName() == "codePane"


def test_dark_style_changes_the_editor_and_the_token_colours(pane: CodePane) -> None:
    pane.set_file_name("dark.py")
    pane.editor.setPlainText("def f():\n    pass\n")
    light_keyword = colour_at(pane, 0, 0)
    pane.set_dark(True)
    assert pane.editor.palette().color(QPalette.ColorRole.Base).lightness() < 80
    assert colour_at(pane, 0, 0) != light_keyword


# --- the real model, end to end --------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_model_completes_a_python_function(qtbot, real_client, app_settings) -> None:
    pane = CodePane(real_client, app_settings)
    qtbot.addWidget(pane)
    pane.set_file_name("add.py")
    before = "def add(a, b):\n    return"
    pane.editor.setPlainText(before)
    put_cursor(pane, len(before))

    run_until_idle(qtbot, pane, pane.complete_at_cursor, timeout=120_000)

    text = pane.editor.toPlainText()
    assert text.startswith(before)
    assert text[len(before) :].strip(), message(pane)
    pane.editor.undo()
    assert pane.editor.toPlainText() == before
    pane.close()


@pytest.mark.slow
def test_real_model_fix_shows_a_diff_and_accept_writes_what_it_shows(qtbot, real_client, app_settings) -> None:
    pane = CodePane(real_client, app_settings)
    qtbot.addWidget(pane)
    pane.show()
    pane.set_file_name("add.py")
    pane.editor.setPlainText(BUGGY)
    error_input = child(pane, QPlainTextEdit, "codeErrorInput")
    assert isinstance(error_input, QPlainTextEdit)
    error_input.setPlainText("add(2, 3) returned -1 instead of 5")

    run_until_idle(qtbot, pane, pane.fix_code, timeout=120_000)

    assert pane.editor.toPlainText() == BUGGY, "the document waits for Accept"
    assert child(pane, QWidget, "codeFixPanel").isVisible(), message(pane)
    diff = diff_text(pane)
    assert diff.startswith("--- a/add.py\n+++ b/add.py\n@@"), f"a diff of a changed file, not {diff!r}"
    body = [line for line in diff.splitlines()[2:] if not line.startswith("@@")]
    shown_after = [line[1:] for line in body if line[:1] in (" ", "+")]
    assert shown_after != BUGGY.splitlines(), "the fix changes the code"
    assert button(pane, "codeFixAccept").isEnabled()

    button(pane, "codeFixAccept").click()

    assert pane.editor.toPlainText().splitlines() == shown_after, "Accept writes exactly what the diff showed"
    pane.editor.undo()
    assert pane.editor.toPlainText() == BUGGY
    pane.close()
