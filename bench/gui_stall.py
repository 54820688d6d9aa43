"""The UI thread's longest stall while the editor streams a 256-token story continuation from the real model.

A 5 ms QTimer probe records the gaps between its ticks; the longest gap is how long the window could not react.
Run: ``QT_QPA_PLATFORM=offscreen .venv/bin/python bench/gui_stall.py``; prints one JSON object.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QElapsedTimer, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from assistant.core.settings import AppSettings, SamplerSettings  # noqa: E402
from assistant.engine.session import ModelChoice  # noqa: E402
from assistant.gui.main_window import MainWindow  # noqa: E402
from assistant.gui.worker import AiClient  # noqa: E402

TOKENS = 256


def main() -> None:
    app = QApplication(sys.argv[:1])
    settings = AppSettings()
    settings.sampler = SamplerSettings(max_new_tokens=TOKENS, temperature=0.8, repetition_penalty=1.05, seed=11)
    settings.suggest_in_editor = False
    client = AiClient()
    window = MainWindow(client, settings)
    window.show()
    gaps: list[int] = []
    clock = QElapsedTimer()
    probe = QTimer()
    probe.setInterval(5)
    last = [0]

    def tick() -> None:
        now = clock.elapsed()
        gaps.append(now - last[0])
        last[0] = now

    probe.timeout.connect(tick)
    result: dict[str, float] = {}

    def start() -> None:
        editor = window.editor_pane.editor
        editor.setPlainText(story_text() + "\n\nThe storm broke over Wrenmouth just after midnight, and")
        editor.moveCursor(editor.textCursor().MoveOperation.End)
        clock.start()
        probe.start()
        window.editor_pane.continue_action.trigger()

    def finished(_state: str) -> None:
        if client.state == "ready" and probe.isActive():
            probe.stop()
            ordered = sorted(gaps[2:])
            result["gui_stall_max_ms"] = float(ordered[-1])
            result["gui_stall_p99_ms"] = float(ordered[int(0.99 * (len(ordered) - 1))])
            result["gui_probe_ticks"] = float(len(ordered))
            result["gui_stream_tokens"] = float(TOKENS)
            window._closing_confirmed = True
            window.close()
            app.quit()

    client.modelLoaded.connect(lambda _info: QTimer.singleShot(300, start))
    client.stateChanged.connect(finished)
    client.load(ModelChoice())
    app.exec()
    client.shutdown()
    print(json.dumps(result))


def story_text() -> str:  # noqa: N802 (reads like the constant it stands for)
    from pathlib import Path

    return (Path(__file__).with_name("data") / "story.txt").read_text(encoding="utf-8")


if __name__ == "__main__":
    main()
