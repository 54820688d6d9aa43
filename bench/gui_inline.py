"""Time from the end of a typing pause to the first ghost text on screen, in the real window on the real model.

The editor holds 1,000 characters of ``bench/data/story.txt``; each step types the next character, the ghost-text
controller waits for the pause and sends its request (the end of the pause), and the clock stops when the
suggestion is drawn (``ghostShown``). Run: ``QT_QPA_PLATFORM=offscreen .venv/bin/python bench/gui_inline.py``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from assistant.core.settings import AppSettings  # noqa: E402
from assistant.engine.session import ModelChoice  # noqa: E402
from assistant.gui.main_window import MainWindow  # noqa: E402
from assistant.gui.worker import AiClient  # noqa: E402

STEPS = 30
CONTEXT = 1000


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] if ordered else 0.0


def main() -> None:
    app = QApplication(sys.argv[:1])
    client = AiClient()
    window = MainWindow(client, AppSettings())
    window.show()
    text = (Path(__file__).with_name("data") / "story.txt").read_text(encoding="utf-8")
    start = CONTEXT + 50  # the story is long enough for 1,000 characters of context plus the typed steps
    controller = window.editor_pane.ghost
    editor = window.editor_pane.editor
    latencies: list[float] = []
    sent_at: list[float] = []
    step = [0]

    controller.requestSent.connect(lambda _request: sent_at.append(time.perf_counter()))

    def shown(ghost: str) -> None:
        if ghost and sent_at:
            latencies.append((time.perf_counter() - sent_at[-1]) * 1000)
            sent_at.clear()
            QTimer.singleShot(50, type_next)

    controller.ghostShown.connect(shown)

    def type_next() -> None:
        if step[0] >= STEPS:
            finish()
            return
        character = text[start + step[0]]
        step[0] += 1
        QTest.keyClicks(editor, character)
        QTimer.singleShot(3000, lambda expected=step[0]: step[0] == expected and type_next())  # no suggestion: go on

    def begin() -> None:
        editor.setFocus()
        editor.setPlainText(text[start - CONTEXT : start])
        editor.moveCursor(editor.textCursor().MoveOperation.End)
        QTimer.singleShot(100, type_next)

    def finish() -> None:
        print(
            json.dumps(
                {
                    "gui_inline_first_ghost_p50_ms": round(percentile(latencies, 0.5), 1),
                    "gui_inline_first_ghost_p95_ms": round(percentile(latencies, 0.95), 1),
                    "gui_inline_samples": len(latencies),
                    "gui_inline_steps": STEPS,
                }
            )
        )
        window._closing_confirmed = True
        window.close()
        app.quit()

    client.modelLoaded.connect(lambda _info: QTimer.singleShot(300, begin))
    client.load(ModelChoice())
    app.exec()
    client.shutdown()


if __name__ == "__main__":
    main()
