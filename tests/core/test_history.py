"""Chat history in SQLite: what is saved comes back after a restart, exports read well, damage never crashes."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.core.history import (
    DEFAULT_TITLE,
    SCHEMA_VERSION,
    ChatHistory,
    HistoryError,
    close_open_fence,
    default_history_path,
    title_from_message,
)


@pytest.fixture
def history() -> Iterator[ChatHistory]:
    opened = ChatHistory()
    yield opened
    opened.close()


def test_history_lives_in_the_profile_data_folder(history: ChatHistory, isolated_profile: Path) -> None:
    assert history.path == default_history_path() == isolated_profile / "data" / "chats.sqlite3"
    assert history.path.is_file()
    assert history.notice == ""


def test_messages_come_back_in_order_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "chats.sqlite3"
    with ChatHistory(path) as first:
        conversation_id = first.create_conversation(system_prompt="Be brief.")
        first.append_message(conversation_id, "user", "Hello 👋 — naïve café?")
        first.append_message(conversation_id, "assistant", "Bonjour!\n\n```python\nprint('hi')\n```")
    with ChatHistory(path) as reopened:
        conversation = reopened.load(conversation_id)
    assert conversation.system_prompt == "Be brief."
    assert conversation.messages == [
        {"role": "user", "content": "Hello 👋 — naïve café?"},
        {"role": "assistant", "content": "Bonjour!\n\n```python\nprint('hi')\n```"},
    ]
    assert len(conversation.message_ids) == 2


def test_list_shows_the_most_recently_used_conversation_first(history: ChatHistory) -> None:
    older = history.create_conversation()
    newer = history.create_conversation()
    assert [summary.id for summary in history.list_conversations()] == [newer, older]
    history.append_message(older, "user", "I am back")
    summaries = history.list_conversations()
    assert [summary.id for summary in summaries] == [older, newer]
    assert summaries[0].message_count == 1 and summaries[1].message_count == 0


def test_first_user_message_titles_the_conversation(history: ChatHistory) -> None:
    conversation_id = history.create_conversation()
    assert history.load(conversation_id).title == DEFAULT_TITLE
    history.append_message(conversation_id, "user", "Help me write a sonnet about the winter sea and the gulls")
    history.append_message(conversation_id, "assistant", "Gladly.")
    history.append_message(conversation_id, "user", "Make it rhyme")
    title = history.load(conversation_id).title
    assert title.startswith("Help me write a sonnet")
    assert title.endswith("…") and len(title) <= 41
    assert "Make it rhyme" not in title


def test_a_renamed_conversation_keeps_its_name(history: ChatHistory) -> None:
    conversation_id = history.create_conversation()
    history.rename(conversation_id, "  Poems   for Mum ")
    history.append_message(conversation_id, "user", "Write a poem")
    assert history.load(conversation_id).title == "Poems for Mum"


def test_editing_the_first_message_retitles_an_untitled_conversation(history: ChatHistory) -> None:
    conversation_id = history.create_conversation()
    history.append_message(conversation_id, "user", "Typo questoin")
    history.delete_messages_from(conversation_id, 0)
    history.append_message(conversation_id, "user", "Fixed question")
    assert history.load(conversation_id).title == "Fixed question"


def test_titles_skip_markdown_and_code_fences() -> None:
    assert title_from_message("Explain this Python code:\n\n```python\nx = 1\n```") == "Explain this Python code:"
    assert title_from_message("## Plan\nsteps") == "Plan"
    assert title_from_message("   \n  ") == DEFAULT_TITLE


def test_delete_messages_from_drops_that_message_and_all_later(history: ChatHistory) -> None:
    conversation_id = history.create_conversation()
    for index, role in enumerate(["user", "assistant", "user", "assistant"]):
        history.append_message(conversation_id, role, f"message {index}")
    history.delete_messages_from(conversation_id, 2)
    assert [message["content"] for message in history.load(conversation_id).messages] == ["message 0", "message 1"]
    history.append_message(conversation_id, "user", "message 2 again")
    assert history.load(conversation_id).messages[-1]["content"] == "message 2 again"


def test_update_message_changes_only_that_message(history: ChatHistory) -> None:
    conversation_id = history.create_conversation()
    history.append_message(conversation_id, "user", "question")
    answer_id = history.append_message(conversation_id, "assistant", "partial")
    history.update_message(answer_id, "partial and finished")
    assert history.load(conversation_id).messages == [
        {"role": "user", "content": "question"},
        {"role": "assistant", "content": "partial and finished"},
    ]
    with pytest.raises(HistoryError, match="no longer exists"):
        history.update_message(9999, "nothing")


def test_deleting_a_conversation_deletes_its_messages(history: ChatHistory) -> None:
    kept = history.create_conversation()
    doomed = history.create_conversation()
    history.append_message(doomed, "user", "forget me")
    history.append_message(kept, "user", "keep me")
    history.delete_conversation(doomed)
    assert [summary.id for summary in history.list_conversations()] == [kept]
    with pytest.raises(HistoryError, match="no longer exists"):
        history.load(doomed)
    with sqlite3.connect(history.path) as raw:
        assert raw.execute("SELECT count(*) FROM messages").fetchone()[0] == 1


def test_system_prompt_none_means_default_and_empty_means_none(history: ChatHistory) -> None:
    conversation_id = history.create_conversation()
    assert history.load(conversation_id).system_prompt is None
    history.set_system_prompt(conversation_id, "")
    assert history.load(conversation_id).system_prompt == ""
    history.set_system_prompt(conversation_id, "You are a pirate.")
    assert history.load(conversation_id).system_prompt == "You are a pirate."


def test_bad_input_is_refused_with_a_reason(history: ChatHistory) -> None:
    conversation_id = history.create_conversation()
    with pytest.raises(ValueError, match="unknown role"):
        history.append_message(conversation_id, "wizard", "abracadabra")
    with pytest.raises(HistoryError, match="no longer exists"):
        history.append_message(12345, "user", "to nowhere")
    assert history.load(conversation_id).messages == []


def test_schema_is_versioned_with_wal_and_foreign_keys(history: ChatHistory) -> None:
    with sqlite3.connect(history.path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert history._db.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_markdown_export_reads_like_a_document(history: ChatHistory) -> None:
    conversation_id = history.create_conversation(system_prompt="Be kind.")
    history.append_message(conversation_id, "user", "Show me a loop")
    history.append_message(conversation_id, "assistant", "Here:\n```python\nfor i in range(3):\n    print(i)")
    markdown = history.export_markdown(conversation_id)
    assert markdown.startswith("# Show me a loop\n")
    assert "*System prompt:* Be kind." in markdown
    assert "## You\n\nShow me a loop" in markdown
    assert "## Penwright\n\nHere:" in markdown
    assert markdown.count("```") == 2, "an answer cut off inside a code block is closed in the export"


def test_json_export_has_every_message_and_field(history: ChatHistory) -> None:
    conversation_id = history.create_conversation()
    history.append_message(conversation_id, "user", "Ünïcode ✓")
    history.append_message(conversation_id, "assistant", "Yes")
    data = json.loads(history.export_json(conversation_id))
    assert data["format"] == "penwright-chat"
    assert data["title"] == "Ünïcode ✓"
    assert [(message["role"], message["content"]) for message in data["messages"]] == [
        ("user", "Ünïcode ✓"),
        ("assistant", "Yes"),
    ]
    assert all(message["created"].endswith("+00:00") for message in data["messages"])


def test_a_damaged_file_is_moved_aside_and_a_fresh_history_starts(isolated_profile: Path) -> None:
    path = default_history_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00garbage, not a database\xff" * 200)
    path.with_name("chats.sqlite3-wal").write_bytes(b"stale wal")
    with ChatHistory() as history:
        assert "damaged" in history.notice and "chats.sqlite3.damaged" in history.notice
        assert history.list_conversations() == []
        conversation_id = history.create_conversation()
        history.append_message(conversation_id, "user", "a fresh start")
    damaged = path.with_name("chats.sqlite3.damaged")
    assert damaged.read_bytes().startswith(b"\x00garbage")
    wal = path.with_name("chats.sqlite3-wal")
    assert not wal.exists() or b"stale wal" not in wal.read_bytes(), "nothing of the damaged file is reused"
    with ChatHistory() as reopened:
        assert reopened.notice == ""
        assert [summary.title for summary in reopened.list_conversations()] == ["a fresh start"]


def test_a_second_damaged_file_does_not_overwrite_the_first(tmp_path: Path) -> None:
    path = tmp_path / "chats.sqlite3"
    path.with_name("chats.sqlite3.damaged").write_bytes(b"first")
    path.write_bytes(b"second damaged file" * 100)
    with ChatHistory(path) as history:
        assert history.damaged_path == tmp_path / "chats.sqlite3.2.damaged"
    assert (tmp_path / "chats.sqlite3.damaged").read_bytes() == b"first"


def test_another_programs_database_is_not_mistaken_for_ours(tmp_path: Path) -> None:
    path = tmp_path / "chats.sqlite3"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE recipes (name TEXT)")
    raw.close()
    with ChatHistory(path) as history:
        assert "damaged" in history.notice
        assert history.list_conversations() == []


def test_an_empty_file_is_a_new_history_not_damage(tmp_path: Path) -> None:
    path = tmp_path / "chats.sqlite3"
    path.write_bytes(b"")
    with ChatHistory(path) as history:
        assert history.notice == ""
        assert history.create_conversation() == 1


def test_a_newer_versions_history_is_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "chats.sqlite3"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE future (x)")
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    before = path.read_bytes()
    with ChatHistory(path) as history:
        assert "newer version" in history.notice
        conversation_id = history.create_conversation()  # still usable, in memory
        history.append_message(conversation_id, "user", "kept for this session")
        assert history.load(conversation_id).messages
    assert path.read_bytes() == before


def test_close_open_fence_only_touches_unclosed_blocks() -> None:
    assert close_open_fence("text") == "text"
    assert close_open_fence("```py\nx\n```") == "```py\nx\n```"
    assert close_open_fence("```py\nx") == "```py\nx\n```"
    assert close_open_fence("````\n```\ninner") == "````\n```\ninner\n````"
