"""The Store on SQLite, the embedded default. Timestamps are kept as microseconds (UTC).

Writes go through the runtime's aiosqlite connection, which serializes them. Reads use a
second, read-only connection on the event loop's own thread: in WAL mode a reader sees every
committed write and never waits for a writer, and an indexed read takes tens of microseconds,
several times less than handing it to aiosqlite's thread and back.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from meshchat_chat.domain import (
    Change,
    ChangeKind,
    ChangeOutcome,
    ChangeResult,
    Chat,
    ChatCursor,
    Departure,
    DepartureReason,
    Entry,
    Member,
    Message,
    NewChange,
    NewMessage,
    ReadState,
    SendOutcome,
    SendResult,
    UserRef,
    apply_change,
)
from meshchat_runtime.database import SqliteDatabase, load_migrations
from meshchat_runtime.errors import NotFound
from meshchat_runtime.timestamps import from_micros, to_micros

__all__ = ["SqliteStore"]

_CHAT_COLUMNS = (
    "c.id, c.name, c.owner_id, c.created_at, c.last_seq, "
    "(SELECT json_group_array(json_array(m.user_id, m.username, m.joined_at)) "
    "FROM chat_members m WHERE m.chat_id = c.id) AS members"
)
_INSERT_COLUMNS = "chat_id, seq, sender_id, sender_username, text, client_message_id, created_at"
_MESSAGE_COLUMNS = f"{_INSERT_COLUMNS}, edited_at, deleted_at"
# An entry of the log, joined with the message it is or that it changed.
_LOG = """
SELECT e.seq AS entry_seq, e.kind, e.sender_id AS actor_id, e.sender_username AS actor_username,
       e.created_at AS changed_at, m.chat_id, m.seq, m.sender_id, m.sender_username, m.text,
       m.client_message_id, m.created_at, m.edited_at, m.deleted_at
FROM messages e JOIN messages m ON m.chat_id = e.chat_id AND m.seq = coalesce(e.target_seq, e.seq)
WHERE e.chat_id = ? AND e.seq > ? ORDER BY e.seq LIMIT ?
"""
_READ_STATES = """
SELECT m.chat_id, m.read_seq,
    (SELECT count(*) FROM messages x WHERE x.chat_id = m.chat_id AND x.seq > m.read_seq
       AND x.kind = 'message' AND x.deleted_at IS NULL AND x.sender_id <> m.user_id) AS unread,
    (SELECT x.created_at FROM messages x WHERE x.chat_id = m.chat_id AND x.kind = 'message'
       ORDER BY x.seq DESC LIMIT 1) AS last_message_at
FROM chat_members m WHERE m.user_id = ? AND m.chat_id IN ({marks})
"""
_DEPARTURE_COLUMNS = "chat_id, user_id, chat_name, reason, by_username, departed_at"


def _optional_time(micros: int | None) -> datetime | None:
    return from_micros(micros) if micros is not None else None


def _chat(row: Any) -> Chat:
    members = sorted(
        (
            Member(user_id, username, from_micros(joined))
            for user_id, username, joined in json.loads(row["members"])
        ),
        key=lambda m: (m.joined_at, m.username),
    )
    return Chat(
        id=row["id"],
        name=row["name"],
        owner_id=row["owner_id"],
        created_at=from_micros(row["created_at"]),
        last_seq=row["last_seq"],
        members=tuple(members),
    )


def _message(row: Any) -> Message:
    return Message(
        chat_id=row["chat_id"],
        seq=row["seq"],
        sender_id=row["sender_id"],
        sender_username=row["sender_username"],
        text=row["text"],
        client_message_id=row["client_message_id"],
        created_at=from_micros(row["created_at"]),
        edited_at=_optional_time(row["edited_at"]),
        deleted_at=_optional_time(row["deleted_at"]),
    )


def _entry(row: Any) -> Entry:
    message = _message(row)
    if row["kind"] == "message":
        return message
    return Change(
        chat_id=message.chat_id,
        seq=row["entry_seq"],
        kind=ChangeKind(row["kind"]),
        message=message,
        actor=UserRef(row["actor_id"], row["actor_username"]),
        changed_at=from_micros(row["changed_at"]),
    )


def _departure(row: Any) -> Departure:
    return Departure(
        chat_id=row["chat_id"],
        user_id=row["user_id"],
        chat_name=row["chat_name"],
        reason=DepartureReason(row["reason"]),
        by_username=row["by_username"],
        at=from_micros(row["departed_at"]),
    )


def _messages(rows: Iterable[Any]) -> list[Message]:
    return [_message(row) for row in rows]


class SqliteStore:
    """Chats, members and messages in one SQLite file."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db
        self._reader = sqlite3.connect(db.path, isolation_level=None)
        self._reader.row_factory = sqlite3.Row
        self._reader.execute("PRAGMA query_only=ON")
        self._reader.execute("PRAGMA busy_timeout=1000")

    @classmethod
    async def open(cls, path: Path) -> SqliteStore:
        """Open (creating and migrating) the database file at ``path``."""
        db = SqliteDatabase(path)
        await db.open(load_migrations("meshchat_chat", "sqlite"))
        return cls(db)

    def _read(self, query: str, params: Sequence[object]) -> list[sqlite3.Row]:
        return self._reader.execute(query, params).fetchall()

    async def create_chat(self, chat: Chat) -> None:
        """Store a new chat with its members."""
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO chats (id, name, owner_id, created_at, last_seq) VALUES (?, ?, ?, ?, ?)",
                (chat.id, chat.name, chat.owner_id, to_micros(chat.created_at), chat.last_seq),
            )
            await conn.executemany(
                "INSERT INTO chat_members (chat_id, user_id, username, joined_at) "
                "VALUES (?, ?, ?, ?)",
                [(chat.id, m.user_id, m.username, to_micros(m.joined_at)) for m in chat.members],
            )

    async def get_chat(self, chat_id: str) -> Chat | None:
        """The chat with its members, or None."""
        rows = self._read(f"SELECT {_CHAT_COLUMNS} FROM chats c WHERE c.id = ?", (chat_id,))  # noqa: S608
        return next((_chat(row) for row in rows), None)

    async def list_chats(self, user_id: str, limit: int, after: ChatCursor | None) -> list[Chat]:
        """The member's chats, newest first, after the cursor."""
        query = (
            f"SELECT {_CHAT_COLUMNS} FROM chats c "  # noqa: S608
            "WHERE c.id IN (SELECT chat_id FROM chat_members WHERE user_id = ?)"
        )
        params: list[object] = [user_id]
        if after is not None:
            query += " AND (c.created_at, c.id) < (?, ?)"
            params += [to_micros(after.created_at), after.chat_id]
        query += " ORDER BY c.created_at DESC, c.id DESC LIMIT ?"
        params.append(limit)
        return [_chat(row) for row in self._read(query, params)]

    async def delete_chat(self, chat_id: str, by_username: str, at: datetime) -> bool:
        """Delete the chat; its members and messages go with it, departures stay."""
        async with self._db.transaction() as conn:
            await conn.execute(
                f"INSERT OR REPLACE INTO departures ({_DEPARTURE_COLUMNS}) "  # noqa: S608
                "SELECT m.chat_id, m.user_id, c.name, 'chat_deleted', ?, ? "
                "FROM chat_members m JOIN chats c ON c.id = m.chat_id WHERE m.chat_id = ?",
                (by_username, to_micros(at), chat_id),
            )
            cursor = await conn.execute("DELETE FROM chats WHERE id = ?", (chat_id,))
            return cursor.rowcount > 0

    async def add_member(self, chat_id: str, member: Member) -> bool:
        """Add a member unless already one."""
        async with self._db.transaction() as conn:
            try:
                cursor = await conn.execute(
                    "INSERT INTO chat_members (chat_id, user_id, username, joined_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (chat_id, user_id) DO NOTHING",
                    (chat_id, member.user_id, member.username, to_micros(member.joined_at)),
                )
            except sqlite3.IntegrityError:
                raise NotFound(f"chat {chat_id} not found") from None
            if cursor.rowcount == 0:
                return False
            await conn.execute(
                "DELETE FROM departures WHERE chat_id = ? AND user_id = ?",
                (chat_id, member.user_id),
            )
            return True

    async def remove_member(self, departure: Departure) -> bool:
        """Remove a member and keep the departure."""
        async with self._db.transaction() as conn:
            cursor = await conn.execute(
                "DELETE FROM chat_members WHERE chat_id = ? AND user_id = ?",
                (departure.chat_id, departure.user_id),
            )
            if cursor.rowcount == 0:
                return False
            await conn.execute(
                f"INSERT OR REPLACE INTO departures ({_DEPARTURE_COLUMNS}) "  # noqa: S608
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    departure.chat_id,
                    departure.user_id,
                    departure.chat_name,
                    departure.reason.value,
                    departure.by_username,
                    to_micros(departure.at),
                ),
            )
            return True

    async def departure(self, chat_id: str, user_id: str) -> Departure | None:
        """Why the user is no longer a member, when they were one."""
        rows = self._read(
            f"SELECT {_DEPARTURE_COLUMNS} FROM departures WHERE chat_id = ? AND user_id = ?",  # noqa: S608
            (chat_id, user_id),
        )
        return next((_departure(row) for row in rows), None)

    async def send_message(self, message: NewMessage) -> SendResult:
        """Store the message with the chat's next seq, or return the first one of a retry."""
        async with self._db.transaction() as conn:
            if message.client_message_id:
                rows = await conn.execute_fetchall(
                    f"SELECT {_MESSAGE_COLUMNS} FROM messages "  # noqa: S608
                    "WHERE chat_id = ? AND sender_id = ? AND client_message_id = ?",
                    (message.chat_id, message.sender.user_id, message.client_message_id),
                )
                if rows:
                    return SendResult(SendOutcome.DUPLICATE, _message(next(iter(rows))))
            rows = await conn.execute_fetchall(
                "UPDATE chats SET last_seq = last_seq + 1 WHERE id = ? AND EXISTS "
                "(SELECT 1 FROM chat_members WHERE chat_id = ? AND user_id = ?) "
                "RETURNING last_seq",
                (message.chat_id, message.chat_id, message.sender.user_id),
            )
            seq = next((row[0] for row in rows), None)
            if seq is None:
                exists = await conn.execute_fetchall(
                    "SELECT 1 FROM chats WHERE id = ?", (message.chat_id,)
                )
                return SendResult(SendOutcome.NOT_MEMBER if exists else SendOutcome.NO_CHAT)
            stored = Message(
                chat_id=message.chat_id,
                seq=seq,
                sender_id=message.sender.user_id,
                sender_username=message.sender.username,
                text=message.text,
                client_message_id=message.client_message_id,
                created_at=message.created_at,
            )
            await conn.execute(
                f"INSERT INTO messages ({_INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                (
                    stored.chat_id,
                    stored.seq,
                    stored.sender_id,
                    stored.sender_username,
                    stored.text,
                    stored.client_message_id,
                    to_micros(stored.created_at),
                ),
            )
            return SendResult(SendOutcome.CREATED, stored)

    async def change_message(self, change: NewChange) -> ChangeResult:
        """Edit or delete the message, the change taking the chat's next seq."""
        async with self._db.transaction() as conn:
            rows = await conn.execute_fetchall(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages "  # noqa: S608
                "WHERE chat_id = ? AND seq = ? AND kind = 'message'",
                (change.chat_id, change.message_seq),
            )
            current = next((_message(row) for row in rows), None)
            if current is None:
                return ChangeResult(ChangeOutcome.NO_MESSAGE)
            updated = apply_change(current, change)
            if isinstance(updated, ChangeOutcome):
                return ChangeResult(updated, message=current)
            bumped = await conn.execute_fetchall(
                "UPDATE chats SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq",
                (change.chat_id,),
            )
            seq = int(next(iter(bumped))[0])
            await conn.execute(
                "UPDATE messages SET text = ?, edited_at = ?, deleted_at = ? "
                "WHERE chat_id = ? AND seq = ?",
                (
                    updated.text,
                    to_micros(updated.edited_at) if updated.edited_at else None,
                    to_micros(updated.deleted_at) if updated.deleted_at else None,
                    change.chat_id,
                    change.message_seq,
                ),
            )
            await conn.execute(
                f"INSERT INTO messages ({_INSERT_COLUMNS}, kind, target_seq) "  # noqa: S608
                "VALUES (?, ?, ?, ?, '', '', ?, ?, ?)",
                (
                    change.chat_id,
                    seq,
                    change.actor.user_id,
                    change.actor.username,
                    to_micros(change.changed_at),
                    change.kind.value,
                    change.message_seq,
                ),
            )
        stored = Change(change.chat_id, seq, change.kind, updated, change.actor, change.changed_at)
        return ChangeResult(ChangeOutcome.CHANGED, stored, updated)

    async def get_message(self, chat_id: str, seq: int) -> Message | None:
        """The message with this seq, or None."""
        rows = self._read(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages "  # noqa: S608
            "WHERE chat_id = ? AND seq = ? AND kind = 'message'",
            (chat_id, seq),
        )
        return next((_message(row) for row in rows), None)

    async def log_after(self, chat_id: str, after_seq: int, limit: int) -> list[Entry]:
        """Entries with seq > after_seq, ascending."""
        return [_entry(row) for row in self._read(_LOG, (chat_id, after_seq, limit))]

    async def messages_after(self, chat_id: str, after_seq: int, limit: int) -> list[Message]:
        """Messages with seq > after_seq, ascending."""
        rows = self._read(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE chat_id = ? AND seq > ? "  # noqa: S608
            "AND kind = 'message' ORDER BY seq LIMIT ?",
            (chat_id, after_seq, limit),
        )
        return _messages(rows)

    async def messages_before(
        self, chat_id: str, before_seq: int | None, limit: int
    ) -> list[Message]:
        """The newest messages with seq < before_seq, ascending."""
        bound = before_seq if before_seq is not None else 2**63 - 1
        rows = self._read(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE chat_id = ? AND seq < ? "  # noqa: S608
            "AND kind = 'message' ORDER BY seq DESC LIMIT ?",
            (chat_id, bound, limit),
        )
        return _messages(reversed(rows))

    async def mark_read(self, chat_id: str, user_id: str, seq: int) -> int | None:
        """The larger of the read position and ``seq``, in one statement."""
        async with self._db.transaction() as conn:
            rows = await conn.execute_fetchall(
                "UPDATE chat_members SET read_seq = max(read_seq, ?) "
                "WHERE chat_id = ? AND user_id = ? RETURNING read_seq",
                (seq, chat_id, user_id),
            )
        return next((int(row[0]) for row in rows), None)

    async def read_states(self, user_id: str, chat_ids: Sequence[str]) -> dict[str, ReadState]:
        """The member's read state in each chat."""
        if not chat_ids:
            return {}
        query = _READ_STATES.format(marks=", ".join("?" * len(chat_ids)))
        return {
            row["chat_id"]: ReadState(
                row["read_seq"], row["unread"], _optional_time(row["last_message_at"])
            )
            for row in self._read(query, (user_id, *chat_ids))
        }

    async def last_seq(self, chat_id: str) -> int | None:
        """The chat's counter, or None."""
        rows = self._read("SELECT last_seq FROM chats WHERE id = ?", (chat_id,))
        return next((int(row[0]) for row in rows), None)

    async def ping(self) -> bool:
        """Whether the database answers."""
        return await self._db.ping()

    async def close(self) -> None:
        """Close the connections."""
        self._reader.close()
        await self._db.close()
