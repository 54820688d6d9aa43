"""Autosave of open documents to a recovery area, so a crash or ``kill -9`` loses at most a few seconds of typing.

Each open document has one JSON snapshot in ``<data>/recovery``. Snapshots are written atomically while the app
runs and removed when a document is saved or closed cleanly; any snapshot still there at the next start was left
by a crash, and the app offers to restore it.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from assistant.core.documents import write_text_atomic
from assistant.core.paths import app_dirs


@dataclass
class Snapshot:
    document_id: str
    pane: str
    """"editor" or "code": where the text is restored."""
    text: str
    path: str | None = None
    """The file the document belongs to; None for an unsaved new document."""
    encoding: str = "utf-8"
    metadata: dict[str, Any] = field(default_factory=dict)
    saved_at: float = 0.0

    @property
    def title(self) -> str:
        return Path(self.path).name if self.path else "Untitled"


class RecoveryStore:
    """Snapshots on disk; used from the UI thread only."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or app_dirs().recovery

    @staticmethod
    def new_document_id() -> str:
        return uuid.uuid4().hex

    def _file(self, document_id: str) -> Path:
        return self.folder / f"{document_id}.json"

    def save(self, snapshot: Snapshot) -> None:
        snapshot.saved_at = time.time()
        write_text_atomic(self._file(snapshot.document_id), json.dumps(asdict(snapshot), ensure_ascii=False))

    def discard(self, document_id: str) -> None:
        with contextlib.suppress(OSError):
            self._file(document_id).unlink(missing_ok=True)

    def leftovers(self) -> list[Snapshot]:
        """Snapshots left by a run that did not close cleanly, newest first; unreadable ones are skipped."""
        if not self.folder.is_dir():
            return []
        snapshots: list[Snapshot] = []
        for file in self.folder.glob("*.json"):
            try:
                data = json.loads(file.read_text(encoding="utf-8"))
                snapshots.append(Snapshot(**data))
            except (OSError, ValueError, TypeError):
                continue
        return sorted(snapshots, key=lambda snapshot: snapshot.saved_at, reverse=True)
