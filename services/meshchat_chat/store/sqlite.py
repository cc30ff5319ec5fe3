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
    AccountChange,
    AddOutcome,
    AppliedChange,
    Change,
    ChangeKind,
    ChangeOutcome,
    ChangeResult,
    Chat,
    ChatCursor,
    Departure,
    DepartureReason,
    Entry,
    KeySet,
    Member,
    Message,
    NewChange,
    NewMessage,
    ReadState,
    Revocation,
    SendOutcome,
    SendResult,
    UserRef,
    apply_change,
)
from meshchat_runtime.database import SqliteDatabase, load_migrations
from meshchat_runtime.errors import NotFound
from meshchat_runtime.metrics import DatabaseMetrics
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


def _revocation(user_id: str, row: Any) -> Revocation:
    return Revocation(
        user_id=user_id,
        not_before=from_micros(row["not_before"]),
        kept_session_id=row["kept_session_id"],
        deleted=bool(row["deleted"]),
    )


class SqliteStore:
    """Chats, members and messages in one SQLite file."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db
        self._reader = sqlite3.connect(db.path, isolation_level=None)
        self._reader.row_factory = sqlite3.Row
        self._reader.execute("PRAGMA query_only=ON")
        self._reader.execute("PRAGMA busy_timeout=1000")

    @classmethod
    async def open(cls, path: Path, metrics: DatabaseMetrics | None = None) -> SqliteStore:
        """Open (creating and migrating) the database file at ``path``."""
        db = SqliteDatabase(path, metrics)
        await db.open(load_migrations("meshchat_chat", "sqlite"))
        return cls(db)

    def _read(self, query: str, params: Sequence[object]) -> list[sqlite3.Row]:
        return self._reader.execute(query, params).fetchall()

    async def create_chat(self, chat: Chat, max_owned: int) -> bool:
        """Store a new chat with its members unless the owner has too many (writes are
        serialized, so the count holds until the insert)."""
        async with self._db.transaction() as conn:
            rows = await conn.execute_fetchall(
                "SELECT count(*) FROM chats WHERE owner_id = ?", (chat.owner_id,)
            )
            if next(iter(rows))[0] >= max_owned:
                return False
            await conn.execute(
                "INSERT INTO chats (id, name, owner_id, created_at, last_seq) VALUES (?, ?, ?, ?, ?)",
                (chat.id, chat.name, chat.owner_id, to_micros(chat.created_at), chat.last_seq),
            )
            await conn.executemany(
                "INSERT INTO chat_members (chat_id, user_id, username, joined_at) "
                "VALUES (?, ?, ?, ?)",
                [(chat.id, m.user_id, m.username, to_micros(m.joined_at)) for m in chat.members],
            )
            return True

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

    async def add_member(self, chat_id: str, member: Member, max_members: int) -> AddOutcome:
        """Add a member unless already one or the chat is full."""
        async with self._db.transaction() as conn:
            rows = await conn.execute_fetchall(
                "SELECT count(*), coalesce(max(user_id = ?), 0) FROM chat_members "
                "WHERE chat_id = ?",
                (member.user_id, chat_id),
            )
            count, present = next(iter(rows))
            if present:
                return AddOutcome.ALREADY_MEMBER
            if count >= max_members:
                return AddOutcome.CHAT_FULL
            try:
                cursor = await conn.execute(
                    "INSERT INTO chat_members (chat_id, user_id, username, joined_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (chat_id, user_id) DO NOTHING",
                    (chat_id, member.user_id, member.username, to_micros(member.joined_at)),
                )
            except sqlite3.IntegrityError:
                raise NotFound(f"chat {chat_id} not found") from None
            if cursor.rowcount == 0:
                return AddOutcome.ALREADY_MEMBER
            await conn.execute(
                "DELETE FROM departures WHERE chat_id = ? AND user_id = ?",
                (chat_id, member.user_id),
            )
            return AddOutcome.ADDED

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
                    # The partial index's own condition, without which SQLite cannot use it
                    # (it does not infer it from the parameter) and reads every message.
                    "WHERE chat_id = ? AND sender_id = ? AND client_message_id = ? "
                    "AND client_message_id <> ''",
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

    async def apply_account_change(self, change: AccountChange) -> AppliedChange:
        """Merge the revocation, remove a deleted user from every chat (handing each chat
        they owned to its earliest remaining member, or deleting it), and move the position,
        in one transaction."""
        new = change.revocation
        async with self._db.transaction() as conn:
            rows = await conn.execute_fetchall(
                "SELECT not_before, kept_session_id, deleted FROM revocations WHERE user_id = ?",
                (new.user_id,),
            )
            merged = next((_revocation(new.user_id, row).merged(new) for row in rows), new)
            await conn.execute(
                "INSERT INTO revocations (user_id, not_before, kept_session_id, deleted) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET "
                "not_before = excluded.not_before, kept_session_id = excluded.kept_session_id, "
                "deleted = excluded.deleted",
                (
                    merged.user_id,
                    to_micros(merged.not_before),
                    merged.kept_session_id,
                    int(merged.deleted),
                ),
            )
            await conn.execute(
                "INSERT INTO account_event_position (id, seq) VALUES (1, ?) "
                "ON CONFLICT (id) DO UPDATE SET seq = max(seq, excluded.seq)",
                (change.seq,),
            )
            if not new.deleted:
                return AppliedChange()
            member_of = [
                row[0]
                for row in await conn.execute_fetchall(
                    "SELECT chat_id FROM chat_members WHERE user_id = ?", (new.user_id,)
                )
            ]
            owned = [
                row[0]
                for row in await conn.execute_fetchall(
                    "SELECT id FROM chats WHERE owner_id = ?", (new.user_id,)
                )
            ]
            await conn.execute("DELETE FROM chat_members WHERE user_id = ?", (new.user_id,))
            deleted = []
            for chat_id in owned:
                heirs = await conn.execute_fetchall(
                    "SELECT user_id FROM chat_members WHERE chat_id = ? "
                    "ORDER BY joined_at, username LIMIT 1",
                    (chat_id,),
                )
                heir = next((row[0] for row in heirs), None)
                if heir is None:
                    await conn.execute("DELETE FROM chats WHERE id = ?", (chat_id,))
                    deleted.append(chat_id)
                else:
                    await conn.execute(
                        "UPDATE chats SET owner_id = ? WHERE id = ?", (heir, chat_id)
                    )
        changed = sorted(set(member_of + owned) - set(deleted))
        return AppliedChange(tuple(changed), tuple(deleted))

    async def revocations(self) -> list[Revocation]:
        """Every user's revocation."""
        rows = self._read(
            "SELECT user_id, not_before, kept_session_id, deleted FROM revocations", ()
        )
        return [_revocation(row["user_id"], row) for row in rows]

    async def account_event_position(self) -> int:
        """The number of the last account event applied; 0 before the first."""
        rows = self._read("SELECT seq FROM account_event_position WHERE id = 1", ())
        return next((int(row[0]) for row in rows), 0)

    async def save_key_set(self, key_set: KeySet) -> None:
        """Keep the key set unless a later one is kept."""
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO jwks (id, keys, fetched_at) VALUES (1, ?, ?) ON CONFLICT (id) DO "
                "UPDATE SET keys = excluded.keys, fetched_at = excluded.fetched_at "
                "WHERE excluded.fetched_at >= jwks.fetched_at",
                (key_set.keys, to_micros(key_set.fetched_at)),
            )

    async def load_key_set(self) -> KeySet | None:
        """The key set kept last."""
        rows = self._read("SELECT keys, fetched_at FROM jwks WHERE id = 1", ())
        return next((KeySet(row[0], from_micros(row[1])) for row in rows), None)

    async def ping(self) -> bool:
        """Whether the database answers."""
        return await self._db.ping()

    async def close(self) -> None:
        """Close the connections."""
        self._reader.close()
        await self._db.close()
