"""Chat conversations kept in SQLite, so chats survive restarts and can be exported (no Qt here).

One database file (``<data>/chats.sqlite3``) holds every conversation and its messages in order. The schema is
versioned with ``PRAGMA user_version`` so a later release can migrate it; WAL keeps writes quick and crash-safe;
foreign keys delete a conversation's messages with it. A damaged file never stops the app: it is moved aside
(``chats.sqlite3.damaged``) and a fresh history starts, with :attr:`ChatHistory.notice` saying what happened.
Every method raises :class:`HistoryError` (a sentence for the user) when the disk refuses a read or write.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from assistant.core.errors import PenwrightError
from assistant.core.paths import app_dirs

SCHEMA_VERSION = 1
DEFAULT_TITLE = "New chat"
TITLE_LENGTH = 40
"""Auto-titles keep about this many characters of the first user message."""
ROLES = ("system", "user", "assistant")
ROLE_NAMES = {"user": "You", "assistant": "Penwright", "system": "System"}
"""How each role is labelled for people (the chat view and the Markdown export)."""
EXPORT_FORMAT = "penwright-chat"
EXPORT_VERSION = 1
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")

_SCHEMA = """
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    auto_title INTEGER NOT NULL DEFAULT 1,
    system_prompt TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content TEXT NOT NULL,
    created REAL NOT NULL,
    UNIQUE (conversation_id, position)
);
CREATE INDEX conversations_by_update ON conversations(updated DESC, id DESC);
"""


class HistoryError(PenwrightError):
    """The chat history could not be read or written (disk full, file locked, conversation gone)."""


@dataclass(frozen=True)
class ConversationSummary:
    """One line of the conversation list."""

    id: int
    title: str
    updated: datetime
    message_count: int = 0


@dataclass
class Conversation:
    """A whole conversation; ``messages`` are ``{"role", "content"}`` dicts ready for a ChatRequest."""

    id: int
    title: str
    system_prompt: str | None
    """None means "the app's default system prompt"; "" means none at all."""
    messages: list[dict[str, str]] = field(default_factory=list)
    message_ids: list[int] = field(default_factory=list)
    """The database id of each message, parallel to ``messages`` (for :meth:`ChatHistory.update_message`)."""
    created: datetime | None = None
    updated: datetime | None = None


def default_history_path() -> Path:
    return app_dirs().data / "chats.sqlite3"


def title_from_message(text: str, length: int = TITLE_LENGTH) -> str:
    """A short title from a message: the start of its first line of prose, cut at a word boundary."""
    lines = [line for line in text.splitlines() if line.strip() and not _FENCE.match(line)]
    words = " ".join(lines[0].split()) if lines else ""
    words = re.sub(r"^[#>*`\s]+", "", words)  # Markdown markers make poor titles
    if not words:
        return DEFAULT_TITLE
    if len(words) <= length:
        return words
    cut = words[:length]
    if " " in cut[length // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,.;:") + "…"


def _when(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc)


class ChatHistory:
    """The saved conversations. Use from one thread (the UI thread); each change is committed at once.

    Attributes:
        path: the database file (``None`` path argument: ``<data>/chats.sqlite3`` of the current profile).
        notice: "" normally; otherwise a sentence to show the user (the file was damaged and moved aside, or
            written by a newer Penwright, so this session's chats are kept in memory only).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_history_path()
        self.notice = ""
        self.damaged_path: Path | None = None
        self._db = self._open()

    # --- opening ---------------------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        """Open (or create) the database; a damaged file is moved aside and a fresh one started."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            self.notice = f"The chat history folder cannot be created ({error.strerror}); chats will not be saved."
            return self._connect(":memory:")
        try:
            return self._connect(str(self.path))
        except sqlite3.DatabaseError as error:
            if isinstance(error, sqlite3.OperationalError) and not self._looks_damaged(error):
                # Locked, read-only or unreachable: the file may be fine, so leave it alone.
                self.notice = f"The chat history cannot be opened ({error}); chats will not be saved this time."
                return self._connect(":memory:")
            self.damaged_path = self._move_aside()
            if self.damaged_path is None:
                self.notice = "The chat history file is damaged and could not be moved aside; chats will not be saved."
                return self._connect(":memory:")
            self.notice = (
                f"The chat history file was damaged, so it was moved to {self.damaged_path.name} "
                "and a new, empty history was started."
            )
            return self._connect(str(self.path))
        except _NewerSchema:
            self.notice = (
                "The chat history was saved by a newer version of Penwright; it is left untouched and "
                "chats will not be saved this time."
            )
            return self._connect(":memory:")

    @staticmethod
    def _looks_damaged(error: sqlite3.Error) -> bool:
        text = str(error).lower()
        return any(word in text for word in ("malformed", "not a database", "corrupt", "disk image"))

    def _connect(self, target: str) -> sqlite3.Connection:
        db = sqlite3.connect(target, timeout=5.0)
        try:
            db.row_factory = sqlite3.Row
            version = db.execute("PRAGMA user_version").fetchone()[0]  # reads the header: fails on garbage
            if version > SCHEMA_VERSION:
                raise _NewerSchema()
            db.execute("PRAGMA foreign_keys = ON")
            if target != ":memory:":
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"database disk image is malformed ({check})")
            if version < SCHEMA_VERSION:
                self._migrate(db, version)
        except BaseException:
            db.close()
            raise
        return db

    @staticmethod
    def _migrate(db: sqlite3.Connection, version: int) -> None:
        """Bring an older (or new, empty) database up to ``SCHEMA_VERSION`` in one transaction."""
        if version == 0:
            tables = db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            if tables:
                raise sqlite3.DatabaseError("not a Penwright chat database: unknown tables and no version")
            db.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")

    def _move_aside(self) -> Path | None:
        """Rename the damaged file (and its WAL and shared-memory files) so nothing of it is reused."""
        target = self.path.with_name(self.path.name + ".damaged")
        number = 1
        while target.exists():
            number += 1
            target = self.path.with_name(f"{self.path.name}.{number}.damaged")
        try:
            self.path.replace(target)
        except OSError:
            return None
        for suffix in ("-wal", "-shm", "-journal"):
            companion = self.path.with_name(self.path.name + suffix)
            if companion.exists():
                with contextlib.suppress(OSError):
                    companion.replace(target.with_name(target.name + suffix))
        return target

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()

    def __enter__(self) -> ChatHistory:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- reading ---------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn sqlite3 failures into one sentence the user can act on."""
        try:
            yield
        except sqlite3.Error as error:
            raise HistoryError(f"The chat history could not {doing}: {error}.") from error

    def list_conversations(self) -> list[ConversationSummary]:
        """Every conversation, the most recently updated first."""
        with self._errors("be read"):
            rows = self._db.execute(
                "SELECT c.id, c.title, c.updated, count(m.id) AS message_count FROM conversations c "
                "LEFT JOIN messages m ON m.conversation_id = c.id GROUP BY c.id ORDER BY c.updated DESC, c.id DESC"
            ).fetchall()
        return [
            ConversationSummary(row["id"], row["title"], _when(row["updated"]), row["message_count"]) for row in rows
        ]

    def _conversation_row(self, conversation_id: int) -> sqlite3.Row:
        row = self._db.execute("SELECT * FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        if row is None:
            raise HistoryError("That conversation no longer exists.")
        return row  # type: ignore[no-any-return]

    def load(self, conversation_id: int) -> Conversation:
        with self._errors("be read"):
            row = self._conversation_row(conversation_id)
            messages = self._db.execute(
                "SELECT id, role, content FROM messages WHERE conversation_id = ? ORDER BY position",
                (conversation_id,),
            ).fetchall()
        return Conversation(
            id=row["id"],
            title=row["title"],
            system_prompt=row["system_prompt"],
            messages=[{"role": message["role"], "content": message["content"]} for message in messages],
            message_ids=[message["id"] for message in messages],
            created=_when(row["created"]),
            updated=_when(row["updated"]),
        )

    # --- changing --------------------------------------------------------------------------------------------

    def create_conversation(self, title: str = DEFAULT_TITLE, system_prompt: str | None = None) -> int:
        """A new, empty conversation. Its title follows the first user message until it is renamed."""
        now = time.time()
        auto = title == DEFAULT_TITLE
        with self._errors("be saved"), self._db:
            cursor = self._db.execute(
                "INSERT INTO conversations (title, auto_title, system_prompt, created, updated) VALUES (?, ?, ?, ?, ?)",
                (title.strip() or DEFAULT_TITLE, int(auto), system_prompt, now, now),
            )
        return int(cursor.lastrowid or 0)

    def append_message(self, conversation_id: int, role: str, content: str) -> int:
        """Add a message at the end; the first user message also names an untitled conversation."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        now = time.time()
        with self._errors("be saved"), self._db:
            conversation = self._conversation_row(conversation_id)
            position = self._db.execute(
                "SELECT coalesce(max(position) + 1, 0) FROM messages WHERE conversation_id = ?", (conversation_id,)
            ).fetchone()[0]
            cursor = self._db.execute(
                "INSERT INTO messages (conversation_id, position, role, content, created) VALUES (?, ?, ?, ?, ?)",
                (conversation_id, position, role, content, now),
            )
            first_user_message = (
                role == "user"
                and not self._db.execute(
                    "SELECT 1 FROM messages WHERE conversation_id = ? AND role = 'user' AND position < ?",
                    (conversation_id, position),
                ).fetchone()
            )
            if conversation["auto_title"] and first_user_message:
                self._db.execute(
                    "UPDATE conversations SET title = ? WHERE id = ?", (title_from_message(content), conversation_id)
                )
            self._touch(conversation_id, now)
        return int(cursor.lastrowid or 0)

    def update_message(self, message_id: int, content: str) -> None:
        with self._errors("be saved"), self._db:
            row = self._db.execute("SELECT conversation_id FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise HistoryError("That message no longer exists.")
            self._db.execute("UPDATE messages SET content = ? WHERE id = ?", (content, message_id))
            self._touch(row["conversation_id"], time.time())

    def delete_messages_from(self, conversation_id: int, position: int) -> None:
        """Drop the message at ``position`` (0 is the first) and every later one: edit-and-resend, regenerate."""
        with self._errors("be saved"), self._db:
            self._conversation_row(conversation_id)
            self._db.execute(
                "DELETE FROM messages WHERE conversation_id = ? AND position >= ?", (conversation_id, max(0, position))
            )
            self._touch(conversation_id, time.time())

    def rename(self, conversation_id: int, title: str) -> None:
        """Give a conversation the user's own title (it then stops following the first message)."""
        title = " ".join(title.split())
        with self._errors("be saved"), self._db:
            self._conversation_row(conversation_id)
            self._db.execute(
                "UPDATE conversations SET title = ?, auto_title = ? WHERE id = ?",
                (title or DEFAULT_TITLE, int(not title), conversation_id),
            )

    def set_system_prompt(self, conversation_id: int, system_prompt: str | None) -> None:
        with self._errors("be saved"), self._db:
            self._conversation_row(conversation_id)
            self._db.execute(
                "UPDATE conversations SET system_prompt = ? WHERE id = ?", (system_prompt, conversation_id)
            )

    def delete_conversation(self, conversation_id: int) -> None:
        with self._errors("be saved"), self._db:
            self._db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    def _touch(self, conversation_id: int, now: float) -> None:
        self._db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, conversation_id))

    # --- exporting -------------------------------------------------------------------------------------------

    def export_markdown(self, conversation_id: int) -> str:
        """The conversation as a Markdown document a person can read, share or print."""
        conversation = self.load(conversation_id)
        parts = [f"# {conversation.title}\n"]
        if conversation.system_prompt:
            parts.append(f"*System prompt:* {' '.join(conversation.system_prompt.split())}\n")
        for message in conversation.messages:
            content = message["content"].strip("\n")
            parts.append(f"## {ROLE_NAMES.get(message['role'], message['role'])}\n\n{close_open_fence(content)}\n")
        return "\n".join(parts)

    def export_json(self, conversation_id: int) -> str:
        """The conversation as JSON with every field, for other tools or a later import."""
        conversation = self.load(conversation_id)
        with self._errors("be read"):
            rows = self._db.execute(
                "SELECT role, content, created FROM messages WHERE conversation_id = ? ORDER BY position",
                (conversation_id,),
            ).fetchall()
        data: dict[str, Any] = {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "id": conversation.id,
            "title": conversation.title,
            "system_prompt": conversation.system_prompt,
            "created": conversation.created.isoformat() if conversation.created else None,
            "updated": conversation.updated.isoformat() if conversation.updated else None,
            "messages": [
                {"role": row["role"], "content": row["content"], "created": _when(row["created"]).isoformat()}
                for row in rows
            ],
        }
        return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


class _NewerSchema(Exception):
    """The file's schema version is newer than this code knows: never touch it."""


def close_open_fence(markdown: str) -> str:
    """Close a code block left open (an answer cut off by Stop), so it cannot swallow what follows it."""
    open_fence: str | None = None
    for line in markdown.splitlines():
        match = _FENCE.match(line)
        if not match:
            continue
        marker = match.group(1)
        if open_fence is None:
            open_fence = marker
        elif marker[0] == open_fence[0] and len(marker) >= len(open_fence) and not line.strip()[len(marker) :]:
            open_fence = None
    if open_fence is None:
        return markdown
    return markdown + ("" if markdown.endswith("\n") else "\n") + open_fence
