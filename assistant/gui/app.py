"""Composition root of the desktop app: QApplication, settings, the worker and the window.

The window appears before torch or transformers are imported: the model loads in the worker thread while the
user can already type, open and save.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from assistant.core.resources import resource_root
from assistant.core.settings import load_settings
from assistant.gui.worker import AiClient, SessionFactory

log = logging.getLogger(__name__)


def run_app(
    files: list[str] | None = None,
    screenshot: str | None = None,
    profile: str | None = None,
    session_factory: SessionFactory | None = None,
    screenshot_timeout_s: float = 600.0,
) -> int:
    """Start the window; with ``screenshot``, wait until the model is ready, save a picture and exit."""
    started = time.perf_counter()
    if profile:
        os.environ["PENWRIGHT_PROFILE"] = str(Path(profile).expanduser().resolve())
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("Penwright")
    app.setOrganizationName("Penwright")
    app.setDesktopFileName("io.github.penwright.Penwright")
    app.setWindowIcon(QIcon(str(resource_root() / "icons" / "penwright.svg")))

    from assistant.gui.main_window import MainWindow

    settings = load_settings()
    client = AiClient(session_factory)
    window = MainWindow(client, settings)
    window.show()
    log.info("Window on screen %.2f s after start", time.perf_counter() - started)
    _report_timing("window_shown")
    client.modelLoaded.connect(lambda _info: _report_timing("model_ready"))
    client.load(window.model_choice())
    if screenshot:
        _take_screenshot_when_ready(app, window, client, Path(screenshot), screenshot_timeout_s)
    else:
        QTimer.singleShot(0, window.offer_recovery)
    for file in files or []:
        window.open_file(file)
    exit_code = app.exec()
    client.shutdown()
    return int(exit_code or window.property("exitCode") or 0)


def _report_timing(event: str) -> None:
    """With PENWRIGHT_TIMINGS=1, one JSON line per start-up milestone on stderr, for the benchmarks."""
    if os.environ.get("PENWRIGHT_TIMINGS"):
        print(json.dumps({"event": event, "time": time.time()}), file=sys.stderr, flush=True)


def _take_screenshot_when_ready(
    app: QApplication, window: object, client: AiClient, path: Path, timeout_s: float
) -> None:
    from PySide6.QtWidgets import QMainWindow

    assert isinstance(window, QMainWindow)

    def capture(ok: bool) -> None:
        QApplication.processEvents()
        path.parent.mkdir(parents=True, exist_ok=True)
        saved = window.grab().save(str(path))
        window.setProperty("exitCode", 0 if ok and saved else 1)
        if not saved:
            print(f"penwright: could not save the screenshot to {path}", file=sys.stderr)
        window.close()

    client.modelLoaded.connect(lambda _info: QTimer.singleShot(200, lambda: capture(True)))

    def failed(message: str) -> None:
        print(f"penwright: {message}", file=sys.stderr)
        capture(False)

    client.loadFailed.connect(failed)
    QTimer.singleShot(int(timeout_s * 1000), lambda: capture(False))
    del app
