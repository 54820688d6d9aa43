"""A synopsis: one short summary per part of a document, in order, then the whole; and the cache that keeps them.

The engine fills a :class:`Synopsis` part by part (``engine.tasks.summarize_document``); the CLI prints
:meth:`Synopsis.to_text`, and the GUI lists ``parts`` with each title as a link to ``start``. Summaries are cached
by the hash of the part's text, the model and the prompt/settings version, so after editing one chapter only that
chapter is summarized again. Pure Python (sqlite3), no torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from assistant.core.paths import app_dirs

log = logging.getLogger(__name__)

SOURCES = ("model", "regenerated", "extractive", "empty")
"""Where a summary came from: the model's first draft, a later draft (the first invented a name or number), the
part's own most central sentences (every draft invented something), or nothing (a heading with no text under it)."""

EXTRACTIVE_NOTE = "[sentences from the text]"


@dataclass(frozen=True)
class PartSummary:
    """One part's summary, labelled with the part's own title and where the part starts in the document."""

    index: int
    """1-based position among the document's parts."""
    title: str
    start: int
    """Character offset of the part's heading in the document: where the GUI jumps."""
    end: int
    summary: str
    source: str
    """One of :data:`SOURCES`."""
    cached: bool = False
    """True when the summary came from the cache (no model call)."""
    rejected: tuple[str, ...] = ()
    """Names and numbers that earlier drafts invented (why the summary is regenerated or extractive)."""


@dataclass
class Synopsis:
    """What summarizing a document produced so far; ``complete`` once the overall summary is in."""

    parts: list[PartSummary] = field(default_factory=list)
    total_parts: int = 0
    overall: str = ""
    overall_source: str = ""
    """One of :data:`SOURCES`; "" until the overall summary is written."""
    complete: bool = False
    """False when the run was stopped: ``parts`` then holds the parts done before Stop."""

    def part_at(self, offset: int) -> PartSummary | None:
        """The part that holds a document offset (the GUI can highlight the part under the cursor)."""
        for part in self.parts:
            if part.start <= offset < part.end:
                return part
        return None

    def to_text(self, form: str = "synopsis") -> str:
        """The synopsis as Markdown (each part's title, its summary, then the whole), or the paragraph alone.

        A stopped run gives the parts done so far in either form, so Stop never throws work away.
        """
        if form == "paragraph" and self.complete:
            note = f" {EXTRACTIVE_NOTE}" if self.overall_source == "extractive" else ""
            return self.overall.strip() + note + "\n"
        blocks = [render_part(part) for part in self.parts]
        if self.complete and self.overall and (form == "synopsis" or len(self.parts) > 1):
            blocks.append(render_overall(self.overall))
        elif not self.complete and self.total_parts:
            blocks.append(f"(stopped after {len(self.parts)} of {self.total_parts} parts)\n")
        return "\n".join(blocks)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def render_part(part: PartSummary) -> str:
    """One part as the synopsis shows it: its title as a heading, then its summary (marked when quoted)."""
    if part.source == "empty":
        body = "(no text under this heading yet)"
    elif part.source == "extractive":
        body = f"{part.summary.strip()} {EXTRACTIVE_NOTE}"
    else:
        body = part.summary.strip()
    return f"## {part.title}\n\n{body}\n"


def render_overall(overall: str) -> str:
    return f"## The whole\n\n{overall.strip()}\n"


# --- the cache -------------------------------------------------------------------------------------------------


def cache_key(kind: str, text: str, model: str, version: Sequence[object]) -> str:
    """SHA-256 of what decides a summary: what is summarized, by which model, with which prompts and settings."""
    payload = json.dumps([kind, model, list(version), text], ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class SummaryCache:
    """Summaries by key in one SQLite file under the data folder (a synopsis of a novel takes minutes of CPU).

    Any failure (a read-only folder, a damaged file, a lock held too long) is logged and treated as a miss: a cache
    must never stop a summary. At most ``max_entries`` rows are kept; the least recently used go first.
    """

    def __init__(self, path: Path | None = None, max_entries: int = 20_000) -> None:
        self.path = path or app_dirs().data / "summaries.sqlite3"
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._broken = False

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=5)
        connection.execute(
            "CREATE TABLE IF NOT EXISTS summaries (key TEXT PRIMARY KEY, summary TEXT NOT NULL, "
            "source TEXT NOT NULL, used REAL NOT NULL)"
        )
        return connection

    def get(self, key: str) -> tuple[str, str] | None:
        """(summary, source) for a key, or None."""
        row = None
        if not self._broken:
            try:
                with self._connect() as connection:
                    row = connection.execute("SELECT summary, source FROM summaries WHERE key = ?", (key,)).fetchone()
                    if row is not None:
                        connection.execute("UPDATE summaries SET used = ? WHERE key = ?", (time.time(), key))
                connection.close()
            except (sqlite3.Error, OSError) as error:
                self._give_up(error)
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return str(row[0]), str(row[1])

    def put(self, key: str, summary: str, source: str) -> None:
        if self._broken:
            return
        try:
            with self._connect() as connection:
                connection.execute(
                    "INSERT OR REPLACE INTO summaries (key, summary, source, used) VALUES (?, ?, ?, ?)",
                    (key, summary, source, time.time()),
                )
                (count,) = connection.execute("SELECT COUNT(*) FROM summaries").fetchone()
                if count > self.max_entries:
                    connection.execute(
                        "DELETE FROM summaries WHERE key IN (SELECT key FROM summaries ORDER BY used LIMIT ?)",
                        (count - self.max_entries,),
                    )
            connection.close()
        except (sqlite3.Error, OSError) as error:
            self._give_up(error)

    def _give_up(self, error: Exception) -> None:
        log.warning("Summary cache %s unusable, summarizing without it: %s", self.path, error)
        self._broken = True
