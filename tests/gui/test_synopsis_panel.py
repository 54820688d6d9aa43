"""The synopsis side panel: Summarize on a whole document lists its parts, each heading a link to the part.

The fake model below summarizes one part each time the test lets it (a semaphore), in the synopsis form's own
Markdown (``core.synopsis.render_part``), so the tests see the panel fill part by part, Stop mid-way, and offsets
survive emoji (two UTF-16 units each in Qt) and later edits. The last test runs the real bundled model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QTextCursor
from PySide6.QtWidgets import QLabel, QPushButton, QToolButton

from assistant.core.document_parts import split_document
from assistant.core.prompts import SummaryRequest
from assistant.core.settings import AppSettings, SamplerSettings
from assistant.core.synopsis import PartSummary, render_overall, render_part
from assistant.engine.generate import CancelToken, GenerationStats, TextStream
from assistant.gui.panes.editor import EditorPane
from assistant.gui.qt_text import utf16_length
from assistant.gui.synopsis_panel import EMPTY_BODY, SynopsisReader, locate_part, stage_label
from assistant.gui.worker import BATCH_SECONDS, AiClient

pytestmark = pytest.mark.gui

WAIT_MS = 5000

THREE_CHAPTERS = (
    "# The Harbour\n\nAna waited at the harbour for the ferry.\n\n"
    "# The Storm\n\nThe storm broke over the island at night.\n\n"
    "# The Return\n\nIngrid came home in the morning.\n"
)


@dataclass
class GatedSynopsis:
    """A fake synopsis job: each part is summarized ("Summary of <title>.") only when the test releases it.

    ``sources`` marks parts by title as "extractive" (written as the engine writes quoted sentences); parts with
    no text under their heading come out "empty", as from the engine. ``auto`` releases every part at once.
    """

    auto: bool = False
    sources: dict[str, str] = field(default_factory=dict)
    gate: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    requests: list[SummaryRequest] = field(default_factory=list)

    def release(self, parts: int = 1) -> None:
        for _ in range(parts):
            self.gate.release()

    def run(self, request, settings: SamplerSettings, cancel: CancelToken, progress=None) -> TextStream:
        assert isinstance(request, SummaryRequest) and request.form == "synopsis", request
        self.requests.append(request)
        parts = split_document(request.text)
        stats = GenerationStats()

        def pieces() -> Iterator[str]:
            for index, part in enumerate(parts, 1):
                if progress is not None:
                    progress(f"Summarizing part {index} of {len(parts)}: {part.title}", (index - 1) / len(parts))
                while not self.auto and not self.gate.acquire(timeout=0.01):
                    if cancel.cancelled:
                        stats.finish_reason = "cancelled"
                        yield f"(stopped after {index - 1} of {len(parts)} parts)\n"
                        return
                time.sleep(BATCH_SECONDS * 1.5)  # a part takes a while, so the worker sends each block on its own
                source = "empty" if part.is_empty else self.sources.get(part.title, "model")
                summary = "" if source == "empty" else f"Summary of {part.title}."
                yield render_part(PartSummary(index, part.title, part.start, part.end, summary, source)) + "\n"
            if progress is not None:
                progress("Combining the summaries", 1.0)
            yield render_overall("The whole story in one line.")
            stats.finish_reason = "eos"

        return TextStream(pieces(), stats)


@pytest.fixture
def synopsis_model(fake_session, monkeypatch: pytest.MonkeyPatch) -> GatedSynopsis:
    model = GatedSynopsis()
    monkeypatch.setattr(fake_session, "run", model.run)
    return model


@pytest.fixture
def pane(qtbot, fake_client: AiClient, app_settings: AppSettings) -> Iterator[EditorPane]:
    editor_pane = EditorPane(fake_client, app_settings)
    qtbot.addWidget(editor_pane)
    editor_pane.resize(1000, 500)
    editor_pane.show()
    qtbot.waitExposed(editor_pane)
    yield editor_pane
    editor_pane.stop()
    qtbot.waitUntil(lambda: not editor_pane.busy, timeout=WAIT_MS)
    editor_pane.close()


def heading(pane: EditorPane, number: int) -> QPushButton | None:
    return pane.synopsis_panel.findChild(QPushButton, f"synopsisHeading{number}")


def headings(pane: EditorPane) -> list[str]:
    found = [heading(pane, number) for number in range(1, 50)]
    return [button.text() for button in found if button is not None]


def text_of(pane: EditorPane, name: str) -> str:
    label = pane.synopsis_panel.findChild(QLabel, name)
    assert label is not None, name
    return label.text()


def click_heading(qtbot, pane: EditorPane, number: int) -> None:
    button = heading(pane, number)
    assert button is not None, number
    pane.synopsis_panel.scroll_area.ensureWidgetVisible(button)
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def summarize_all(qtbot, pane: EditorPane, model: GatedSynopsis) -> None:
    """Summarize the whole document with every part released at once, and wait until the job has ended."""
    model.auto = True
    with qtbot.waitSignal(pane.busyChanged, timeout=WAIT_MS, check_params_cb=lambda busy: not busy):
        pane.summarize_action.trigger()


def long_document(titles: list[str], paragraphs: int = 30) -> str:
    """Chapters long enough that the editor must scroll, with emoji in every body (two UTF-16 units each)."""
    chapters = []
    for title in titles:
        body = "\n\n".join(f"Line {index} of {title} 🌊 by the sea 🚢." for index in range(paragraphs))
        chapters.append(f"# {title}\n\n{body}\n")
    return "\n".join(chapters)


# --- filling, progress, stop -------------------------------------------------------------------------------------


def test_the_panel_fills_part_by_part_then_shows_the_whole(qtbot, pane: EditorPane, synopsis_model) -> None:
    pane.editor.setPlainText(THREE_CHAPTERS)
    pane.summarize_action.trigger()

    assert pane.busy and pane.synopsis_panel.isVisible() and pane.synopsis_action.isChecked()
    assert not pane.result_panel.isVisible(), "a synopsis goes to its own panel"
    qtbot.waitUntil(lambda: text_of(pane, "synopsisStatus") == "Part 1 of 3: The Harbour", timeout=WAIT_MS)
    assert headings(pane) == []

    synopsis_model.release()
    qtbot.waitUntil(lambda: headings(pane) == ["The Harbour"], timeout=WAIT_MS)
    qtbot.waitUntil(lambda: text_of(pane, "synopsisStatus") == "Part 2 of 3: The Storm", timeout=WAIT_MS)
    assert text_of(pane, "synopsisSummary1") == "Summary of The Harbour."
    assert pane.busy

    synopsis_model.release()
    qtbot.waitUntil(lambda: headings(pane) == ["The Harbour", "The Storm"], timeout=WAIT_MS)
    with qtbot.waitSignal(pane.busyChanged, timeout=WAIT_MS, check_params_cb=lambda busy: not busy):
        synopsis_model.release()

    assert headings(pane) == ["The Harbour", "The Storm", "The Return"]
    assert text_of(pane, "synopsisOverall") == "The whole story in one line."
    assert text_of(pane, "synopsisStatus") == "Done: 3 parts and the whole."
    assert synopsis_model.requests == [SummaryRequest(THREE_CHAPTERS, form="synopsis")]
    assert pane.editor.toPlainText() == THREE_CHAPTERS and not pane.editor.document().isUndoAvailable()

    copy = pane.synopsis_panel.findChild(QPushButton, "synopsisCopy")
    assert copy is not None and copy.isEnabled()
    copy.click()
    assert QGuiApplication.clipboard().text() == (
        "## The Harbour\n\nSummary of The Harbour.\n\n"
        "## The Storm\n\nSummary of The Storm.\n\n"
        "## The Return\n\nSummary of The Return.\n\n"
        "## The whole\n\nThe whole story in one line.\n"
    )


def test_stop_keeps_the_parts_already_done(qtbot, pane: EditorPane, synopsis_model) -> None:
    document = THREE_CHAPTERS + "\n# The End\n\nThey slept.\n"
    pane.editor.setPlainText(document)
    pane.summarize_action.trigger()
    synopsis_model.release(2)
    qtbot.waitUntil(lambda: headings(pane) == ["The Harbour", "The Storm"], timeout=WAIT_MS)

    with qtbot.waitSignal(pane.busyChanged, timeout=WAIT_MS, check_params_cb=lambda busy: not busy):
        pane.stop_button.click()

    assert headings(pane) == ["The Harbour", "The Storm"]
    assert text_of(pane, "synopsisSummary2") == "Summary of The Storm."
    assert text_of(pane, "synopsisStatus") == "Stopped after 2 of 4 parts."
    assert pane.synopsis_panel.findChild(QLabel, "synopsisOverall") is None
    pane.synopsis_panel.copy_button.click()
    assert QGuiApplication.clipboard().text().endswith("Summary of The Storm.\n\n(stopped after 2 of 4 parts)\n")

    click_heading(qtbot, pane, 2)  # what was kept still leads to its part
    assert pane.editor.textCursor().position() == document.index("# The Storm")


def test_another_assist_stops_the_synopsis_and_keeps_its_parts(qtbot, pane: EditorPane, synopsis_model) -> None:
    pane.editor.setPlainText(THREE_CHAPTERS)
    pane.summarize_action.trigger()
    synopsis_model.release()
    qtbot.waitUntil(lambda: headings(pane) == ["The Harbour"], timeout=WAIT_MS)

    cursor = pane.editor.textCursor()
    cursor.movePosition(QTextCursor.MoveOperation.End)
    pane.editor.setTextCursor(cursor)
    pane.continue_story()  # the fake session's plain words: the synopsis job is discarded

    assert text_of(pane, "synopsisStatus") == "Stopped for another assist after 1 of 3 parts."
    assert headings(pane) == ["The Harbour"]
    qtbot.waitUntil(lambda: not pane.busy, timeout=WAIT_MS)
    assert headings(pane) == ["The Harbour"], "nothing of the discarded synopsis arrives later"


def test_quoted_and_empty_parts_are_marked(qtbot, pane: EditorPane, synopsis_model) -> None:
    synopsis_model.sources = {"The Storm": "extractive"}
    pane.editor.setPlainText(THREE_CHAPTERS + "\n# Not Written Yet\n")
    summarize_all(qtbot, pane, synopsis_model)

    assert headings(pane) == ["The Harbour", "The Storm", "The Return", "Not Written Yet"]
    assert text_of(pane, "synopsisSummary2") == "Summary of The Storm.", "the note is not part of the summary"
    assert text_of(pane, "synopsisQuoted2").startswith("Quoted")
    assert pane.synopsis_panel.findChild(QLabel, "synopsisQuoted1") is None
    assert text_of(pane, "synopsisSummary4") == EMPTY_BODY == "(no text under this heading yet)"
    assert [part.source for part in pane.synopsis_panel.synopsis.parts] == ["model", "extractive", "model", "empty"]


# --- going to a part ---------------------------------------------------------------------------------------------


def test_clicking_a_heading_puts_the_cursor_on_it_past_emoji(qtbot, pane: EditorPane, synopsis_model) -> None:
    document = long_document(["Lisbon", "Oslo", "Tromsø"])
    pane.editor.setPlainText(document)
    summarize_all(qtbot, pane, synopsis_model)
    assert headings(pane) == ["Lisbon", "Oslo", "Tromsø"]

    for number, line in ((3, "# Tromsø"), (2, "# Oslo"), (1, "# Lisbon")):
        click_heading(qtbot, pane, number)
        cursor = pane.editor.textCursor()
        offset = document.index(line)
        assert cursor.position() == utf16_length(document[:offset])
        assert cursor.block().text() == line and cursor.positionInBlock() == 0
        assert pane.editor.firstVisibleBlock().blockNumber() == cursor.blockNumber(), "scrolled to the top"
        assert pane.editor.hasFocus()
    assert utf16_length(document[: document.index("# Tromsø")]) > document.index("# Tromsø"), "emoji came before"


def test_an_edited_document_still_leads_to_the_heading(qtbot, pane: EditorPane, synopsis_model) -> None:
    document = long_document(["Lisbon", "Oslo", "Tromsø"], paragraphs=5)
    pane.editor.setPlainText(document)
    summarize_all(qtbot, pane, synopsis_model)
    assert not pane.synopsis_panel.stale

    cursor = QTextCursor(pane.editor.document())
    cursor.insertText("A new first line 🎉🎉 with emoji.\n\n")
    qtbot.waitUntil(lambda: pane.synopsis_panel.stale, timeout=WAIT_MS)

    click_heading(qtbot, pane, 2)
    now = pane.editor.toPlainText()
    assert pane.editor.textCursor().position() == utf16_length(now[: now.index("# Oslo")])
    assert pane.editor.textCursor().block().text() == "# Oslo"

    pane.editor.undo()  # the text is as it was: the synopsis is current again
    qtbot.waitUntil(lambda: not pane.synopsis_panel.stale, timeout=WAIT_MS)


def test_a_heading_that_is_gone_says_the_synopsis_is_out_of_date(qtbot, pane: EditorPane, synopsis_model) -> None:
    document = long_document(["Lisbon", "Oslo", "Tromsø"], paragraphs=5)
    pane.editor.setPlainText(document)
    summarize_all(qtbot, pane, synopsis_model)
    put_at = utf16_length(document[: document.index("Line 2 of Lisbon")])
    cursor = pane.editor.textCursor()
    cursor.setPosition(put_at)
    pane.editor.setTextCursor(cursor)

    renamed = document.replace("# Oslo", "# Bergen")
    pane.editor.selectAll()
    pane.editor.insertPlainText(renamed)
    cursor.setPosition(put_at)
    pane.editor.setTextCursor(cursor)

    click_heading(qtbot, pane, 2)
    assert pane.editor.textCursor().position() == put_at, "the cursor does not move to a guess"
    assert "Summarize again" in text_of(pane, "synopsisStatus")
    assert pane.synopsis_panel.stale


# --- opening, closing, what goes where ---------------------------------------------------------------------------


def test_the_panel_closes_and_reopens_with_its_synopsis(qtbot, pane: EditorPane, synopsis_model) -> None:
    assert not pane.synopsis_panel.isVisible() and not pane.side_panel.isVisible()
    pane.synopsis_action.trigger()
    assert pane.synopsis_panel.isVisible()
    assert "Summarize" in text_of(pane, "synopsisStatus"), "an empty panel says how to fill it"
    pane.synopsis_action.trigger()
    assert not pane.side_panel.isVisible()

    pane.editor.setPlainText(THREE_CHAPTERS)
    summarize_all(qtbot, pane, synopsis_model)
    close = pane.synopsis_panel.findChild(QToolButton, "synopsisClose")
    assert close is not None
    close.click()
    assert not pane.synopsis_panel.isVisible() and not pane.synopsis_action.isChecked()
    assert not pane.side_panel.isVisible()

    pane.synopsis_action.trigger()
    assert pane.synopsis_panel.isVisible() and headings(pane) == ["The Harbour", "The Storm", "The Return"]
    assert pane.synopsis_action in pane.pane_actions()


def test_a_selection_or_a_one_part_document_gets_one_summary(qtbot, pane: EditorPane, fake_session) -> None:
    pane.editor.setPlainText(THREE_CHAPTERS)
    cursor = pane.editor.textCursor()
    cursor.setPosition(0)
    cursor.setPosition(len("# The Harbour\n\nAna waited"), QTextCursor.MoveMode.KeepAnchor)
    pane.editor.setTextCursor(cursor)
    with qtbot.waitSignal(pane.busyChanged, timeout=WAIT_MS, check_params_cb=lambda busy: not busy):
        pane.summarize()
    assert fake_session.requests[-1] == SummaryRequest("# The Harbour\n\nAna waited")
    assert pane.result_panel.isVisible() and not pane.synopsis_panel.isVisible()

    pane.editor.setPlainText("Just one paragraph, no chapters.")
    with qtbot.waitSignal(pane.busyChanged, timeout=WAIT_MS, check_params_cb=lambda busy: not busy):
        pane.summarize()
    assert fake_session.requests[-1] == SummaryRequest("Just one paragraph, no chapters.")
    assert not pane.synopsis_panel.isVisible()


def test_select_all_counts_as_the_whole_document(qtbot, pane: EditorPane, synopsis_model) -> None:
    pane.editor.setPlainText(THREE_CHAPTERS)
    pane.editor.selectAll()
    summarize_all(qtbot, pane, synopsis_model)
    assert synopsis_model.requests == [SummaryRequest(THREE_CHAPTERS, form="synopsis")]
    assert headings(pane) == ["The Harbour", "The Storm", "The Return"]


# --- the pieces alone ---------------------------------------------------------------------------------------------


def test_the_reader_reads_blocks_cut_anywhere() -> None:
    document = "Chapter 1\n\nAna.\n\nChapter 2\n\nChapter 3: The ## Sign\n\nBo.\n"
    parts = split_document(document)
    stream = (
        render_part(PartSummary(1, parts[0].title, 0, 0, "Ana waits.", "model"))
        + "\n"
        + render_part(PartSummary(2, parts[1].title, 0, 0, "", "empty"))
        + "\n"
        + render_part(PartSummary(3, parts[2].title, 0, 0, "Bo leaves.", "extractive"))
        + "\n"
        + render_overall("Ana waits; Bo leaves.")
    )
    whole = SynopsisReader(parts)
    assert len(whole.feed(stream)) == 3
    for size in (1, 2, 7):
        reader = SynopsisReader(parts)
        for start in range(0, len(stream), size):
            reader.feed(stream[start : start + size])
        reader.finish()
        assert reader.synopsis == whole.synopsis
    synopsis = whole.synopsis
    assert [(p.title, p.summary, p.source, p.start) for p in synopsis.parts] == [
        ("Chapter 1", "Ana waits.", "model", 0),
        ("Chapter 2", "", "empty", document.index("Chapter 2")),
        ("Chapter 3: The ## Sign", "Bo leaves.", "extractive", document.index("Chapter 3")),
    ]
    assert synopsis.overall == "Ana waits; Bo leaves." and synopsis.complete


def test_the_reader_stops_at_the_stop_line() -> None:
    parts = split_document(THREE_CHAPTERS)
    reader = SynopsisReader(parts)
    first = render_part(PartSummary(1, "The Harbour", 0, 0, "Ana waits.", "model")) + "\n"
    assert [part.title for part in reader.feed(first + "(stopped after 1 of 3 parts)\n")] == ["The Harbour"]
    reader.finish()
    assert len(reader.synopsis.parts) == 1 and not reader.synopsis.complete


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        ("* * *\n\nA.\n\n* * *\n\nB.\n\n* * *\n\nC.\n", "third break"),  # unchanged
        ("New.\n\n* * *\n\nA, longer.\n\n* * *\n\nB.\n\n* * *\n\nC.\n", "third break"),  # edits elsewhere
        ("* * *\n\nA.\n\n* * *\n\nB.\n\nC.\n", None),  # a break removed: which one? say so
        ("* * *\n\nA.\n\n* * *\n\nB.\n\n* * *\n\nC.\n\n* * *\n\nD.\n", None),  # a break added
    ],
)
def test_locate_part_finds_the_same_occurrence_or_nothing(current: str, expected: str | None) -> None:
    source = "* * *\n\nA.\n\n* * *\n\nB.\n\n* * *\n\nC.\n"
    start = source.rindex("* * *")
    found = locate_part(source, current, start)
    if expected is None:
        assert found is None
    else:
        assert found == current.rindex("* * *")


def test_locate_part_matches_whole_lines_only() -> None:
    source = "Chapter 1\n\nA.\n\nChapter 2\n\nB.\n"
    current = "Chapter 10\n\nA.\n\nChapter 1 \n\nChapter 2\n\nB.\n"
    assert locate_part(source, current, 0) == current.index("Chapter 1 ")
    assert locate_part(source, source.replace("Chapter 1", "Chapter One"), 0) is None


def test_stage_labels() -> None:
    assert stage_label("Summarizing part 2 of 9: Oslo") == "Part 2 of 9: Oslo"
    assert stage_label("Combining the summaries") == "Writing the summary of the whole…"
    assert stage_label("Summarizing part 2 of 9 again: it named Rome") == "Summarizing part 2 of 9 again: it named Rome"


# --- the real model ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_model_synopsis_lists_every_chapter(qtbot, real_client: AiClient, app_settings: AppSettings) -> None:
    app_settings.sampler = SamplerSettings(max_new_tokens=24, seed=1)
    pane = EditorPane(real_client, app_settings)
    qtbot.addWidget(pane)
    document = (
        "Chapter 1: Lisbon\n\nAna sold fish at the market in Lisbon. Every morning she walked to the harbour.\n\n"
        "Chapter 2: Oslo\n\nIngrid took the night ferry to Oslo. The sea was rough and cold.\n\n"
        "Chapter 3: Home\n\nAna and Ingrid met again at the harbour. They laughed and ate bread together.\n"
    )
    pane.editor.setPlainText(document)
    with qtbot.waitSignal(pane.busyChanged, timeout=90_000, check_params_cb=lambda busy: not busy):
        pane.summarize_action.trigger()

    assert headings(pane) == ["Chapter 1: Lisbon", "Chapter 2: Oslo", "Chapter 3: Home"], text_of(
        pane, "synopsisStatus"
    )
    assert all(part.summary.strip() for part in pane.synopsis_panel.synopsis.parts)
    assert text_of(pane, "synopsisOverall").strip()
    click_heading(qtbot, pane, 2)
    assert pane.editor.textCursor().block().text() == "Chapter 2: Oslo"
    pane.close()
