"""The one job runner every pane uses: batches, stop, the stale-result rule, busy, and release.

Released means freed: a job is a child of the client, so one that is never released keeps its whole answer until
the app quits. These tests count the live job objects after each way a job can end, in every pane, and measure
that memory stays flat over 200 chat answers.
"""

from __future__ import annotations

import gc
import itertools
import time
import tracemalloc
from collections.abc import Callable, Iterator

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPlainTextEdit

from assistant.core.errors import ModelError
from assistant.core.history import ChatHistory
from assistant.core.prompts import StoryRequest
from assistant.core.settings import AppSettings, SamplerSettings
from assistant.gui.jobs import FLUSH_MS, JobRunner
from assistant.gui.panes.chat import ChatPane
from assistant.gui.panes.code import CodePane
from assistant.gui.panes.editor import EditorPane
from assistant.gui.worker import AiClient, AiJob
from tests.gui.conftest import FakeSession

pytestmark = pytest.mark.gui

WAIT_MS = 5000


def live_jobs() -> int:
    """Job objects that still exist anywhere in the process."""
    gc.collect()
    return sum(1 for thing in gc.get_objects() if isinstance(thing, AiJob))


def send_message(qtbot, pane: ChatPane, text: str) -> None:
    """Type into the chat box and press Enter, as a user sends."""
    box = pane.findChild(QPlainTextEdit, "chatInput")
    assert box is not None
    qtbot.keyClicks(box, text)
    qtbot.keyClick(box, Qt.Key.Key_Return)


def wait_until_no_jobs(qtbot) -> None:
    qtbot.waitUntil(lambda: live_jobs() == 0, timeout=WAIT_MS)


@pytest.fixture
def runner(qtbot, fake_client: AiClient) -> Iterator[JobRunner]:
    job_runner = JobRunner(fake_client)
    yield job_runner
    job_runner.discard()


# --- the runner ------------------------------------------------------------------------------------------------


def test_text_arrives_in_batches_at_most_one_per_flush_interval(
    qtbot, runner: JobRunner, fake_session: FakeSession
) -> None:
    fake_session.words = [f"w{index} " for index in range(300)]
    fake_session.delay = 0.001
    batches: list[tuple[float, str]] = []
    runner.textArrived.connect(lambda text: batches.append((time.monotonic(), text)))

    with qtbot.waitSignal(runner.finished, timeout=WAIT_MS):
        runner.start(StoryRequest("Once"), SamplerSettings(max_new_tokens=300))

    assert "".join(text for _when, text in batches) == "".join(fake_session.words)
    assert len(batches) < len(fake_session.words) / 5, "never one update per token"
    gaps = [later - earlier for (earlier, _a), (later, _b) in itertools.pairwise(batches)]
    # the last batch may come early: a finished job hands over its last text at once
    assert all(gap >= FLUSH_MS / 1000 * 0.9 for gap in gaps[:-1]), gaps


def test_a_replaced_job_never_delivers_and_busy_does_not_flicker(
    qtbot, runner: JobRunner, fake_session: FakeSession
) -> None:
    fake_session.words = [f"old{index} " for index in range(500)]
    fake_session.delay = 0.002
    texts: list[str] = []
    busy: list[bool] = []
    runner.textArrived.connect(texts.append)
    runner.busyChanged.connect(busy.append)
    settings = SamplerSettings(max_new_tokens=500)

    old = runner.start(StoryRequest("old"), settings)
    qtbot.waitUntil(lambda: bool(texts), timeout=WAIT_MS)
    fake_session.words = ["new"]
    texts.clear()
    with qtbot.waitSignal(runner.finished, timeout=WAIT_MS):
        runner.start(StoryRequest("new"), settings)

    assert old.cancel_token.cancelled, "the replaced job stops generating"
    assert texts == ["new"], "nothing of the replaced job arrives after it was replaced"
    assert busy == [True, False], "one job after another is one busy period"


def test_stop_sets_the_cancel_token_at_once_and_the_job_ends_cancelled(
    qtbot, runner: JobRunner, fake_session: FakeSession
) -> None:
    fake_session.words = [f"w{index} " for index in range(2000)]
    texts: list[str] = []
    runner.textArrived.connect(texts.append)
    job = runner.start(StoryRequest("Once"), SamplerSettings(max_new_tokens=2000))
    qtbot.waitUntil(lambda: bool(texts), timeout=WAIT_MS)

    with qtbot.waitSignal(runner.finished, timeout=WAIT_MS) as finished:
        assert runner.stop()
        assert job.cancel_token.cancelled, "set directly by the UI thread, not queued behind the generation"
        assert runner.busy, "the job stays current until it confirms, with its last text"

    assert finished.args[0]["finish_reason"] == "cancelled"
    assert not runner.busy and not runner.stop()
    assert len("".join(texts).split()) < 2000


def test_a_listener_that_discards_on_the_last_text_gets_no_finished(
    qtbot, runner: JobRunner, fake_session: FakeSession
) -> None:
    fake_session.words = ["only "]
    ended: list[object] = []
    runner.finished.connect(ended.append)
    runner.textArrived.connect(lambda _text: runner.discard())  # e.g. the code pane at a natural end
    runner.start(StoryRequest("x"), SamplerSettings(max_new_tokens=5))
    qtbot.waitUntil(lambda: not runner.busy, timeout=WAIT_MS)
    wait_until_no_jobs(qtbot)
    assert ended == []


def test_every_job_is_released_when_it_ends_is_stopped_is_discarded_or_fails(
    qtbot, runner: JobRunner, fake_client: AiClient, fake_session: FakeSession
) -> None:
    settings = SamplerSettings(max_new_tokens=2000)
    with qtbot.waitSignal(runner.finished, timeout=WAIT_MS):
        runner.start(StoryRequest("ends"), SamplerSettings(max_new_tokens=5))
    wait_until_no_jobs(qtbot)

    fake_session.words = [f"w{index} " for index in range(2000)]
    runner.start(StoryRequest("stopped"), settings)
    with qtbot.waitSignal(runner.finished, timeout=WAIT_MS):
        runner.stop()
    wait_until_no_jobs(qtbot)

    runner.start(StoryRequest("discarded"), settings)
    runner.discard()
    wait_until_no_jobs(qtbot)

    fake_session.fail_with = ModelError("Not enough memory to generate this answer.")
    with qtbot.waitSignal(runner.failed, timeout=WAIT_MS):
        runner.start(StoryRequest("fails"), settings)
    wait_until_no_jobs(qtbot)


def test_an_ended_job_is_freed_once_no_one_holds_it(qtbot, fake_client: AiClient) -> None:
    job = fake_client.start(StoryRequest("no runner"), SamplerSettings(max_new_tokens=3))
    with qtbot.waitSignal(job.finished, timeout=WAIT_MS):
        pass
    assert job.text, "whoever holds the ended job can still read it"
    del job
    assert live_jobs() == 0, "and once no one does, it is gone"


# --- every pane releases its jobs ------------------------------------------------------------------------------

PaneKind = str
PANES: tuple[PaneKind, ...] = ("editor", "chat", "code", "ghost")
ENDINGS = ("ends", "stopped", "fails")


def _pane_and_start(
    qtbot, kind: PaneKind, client: AiClient, settings: AppSettings, history: ChatHistory
) -> tuple[EditorPane | ChatPane | CodePane, Callable[[], None], Callable[[], None]]:
    """A shown pane of ``kind``, a function that starts its job and one that stops it as the user would."""
    if kind == "chat":
        chat = ChatPane(client, settings, history)
        qtbot.addWidget(chat)
        chat.show()

        return chat, lambda: send_message(qtbot, chat, "Hello"), chat.stop
    if kind == "editor":
        editor = EditorPane(client, settings)
        qtbot.addWidget(editor)
        editor.show()
        editor.editor.setPlainText("It was late.")
        editor.editor.moveCursor(editor.editor.textCursor().MoveOperation.End)
        return editor, editor.continue_story, editor.stop
    code = CodePane(client, settings)
    qtbot.addWidget(code)
    code.show()
    code.set_file_name("add.py")
    code.editor.setPlainText("def add(a, b):\n    return ")
    code.editor.moveCursor(code.editor.textCursor().MoveOperation.End)
    if kind == "code":
        return code, code.complete_at_cursor, code.stop
    return code, code.ghost.suggest_now, code.ghost.dismiss


@pytest.mark.parametrize("ending", ENDINGS)
@pytest.mark.parametrize("kind", PANES)
def test_each_panes_job_is_released_when_it_ends_is_stopped_or_fails(
    qtbot, fake_client: AiClient, fake_session: FakeSession, kind: PaneKind, ending: str
) -> None:
    settings = AppSettings(sampler=SamplerSettings(max_new_tokens=2000))
    if ending == "stopped":
        fake_session.words = [f"w{index} " for index in range(2000)]
        fake_session.suggestions = {"": "x" * 2000}
    if ending == "fails":
        fake_session.fail_with = ModelError("Not enough memory to generate this answer.")
    history = ChatHistory()
    pane, start, stop = _pane_and_start(qtbot, kind, fake_client, settings, history)

    def in_flight() -> bool:
        return pane.ghost.in_flight if kind == "ghost" else pane.busy  # type: ignore[union-attr]

    start()
    if kind == "ghost":
        pane.editor.setFocus()
    assert in_flight() and live_jobs() == 1
    if ending == "stopped":
        qtbot.waitUntil(lambda: fake_session.requests != [], timeout=WAIT_MS)
        stop()
    qtbot.waitUntil(lambda: not in_flight(), timeout=WAIT_MS)
    wait_until_no_jobs(qtbot)
    pane.close()
    history.close()


# --- memory over many answers ----------------------------------------------------------------------------------


def test_memory_stays_flat_over_200_chat_answers(qtbot, fake_client: AiClient, fake_session: FakeSession) -> None:
    """Each answer used to stay in memory with its job: 200 live jobs after 200 answers, +4.2 MB over the last 180
    (answers of 20 KB). Released, no job outlives its answer and the growth is caches (~0.2 MB, not per answer)."""
    fake_session.delay = 0
    fake_session.words = ["x" * 999 + " " for _ in range(20)]  # 20 KB answers make a leak plain to see
    settings = AppSettings(sampler=SamplerSettings(max_new_tokens=20))
    history = ChatHistory()
    pane = ChatPane(fake_client, settings, history)
    qtbot.addWidget(pane)
    pane.show()

    def answer(start: Callable[[], None]) -> None:
        with qtbot.waitSignal(pane.answerFinished, timeout=WAIT_MS):
            start()

    answer(lambda: send_message(qtbot, pane, "Hello"))
    for _ in range(19):  # warm up: caches, the history's statements, the view's first layout
        answer(pane.regenerate)
    gc.collect()
    jobs_after_20 = live_jobs()
    tracemalloc.start()
    try:
        for _ in range(180):
            fake_session.requests.clear()  # the fake model's own record of requests is not the app's memory
            answer(pane.regenerate)
        jobs_after_200 = live_jobs()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()

    assert jobs_after_20 == 0 and jobs_after_200 == 0, (jobs_after_20, jobs_after_200)
    assert grown < 500_000, f"Python memory grew {grown / 1e6:.2f} MB over 180 answers of 20 KB"
    assert len(pane.messages) == 2 and len(pane.messages[1]["content"]) > 19_000
    pane.close()
    history.close()
