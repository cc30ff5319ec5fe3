"""The Store on PostgreSQL through the shared psycopg 3 pool.

A send is one statement: it checks membership and the idempotency key, increments the
chat's counter row (the row lock orders concurrent sends of a chat, and a rolled-back send
gives its number back), inserts the message and queues a NOTIFY, all in the transaction
of that statement, so a message and its announcement are committed together.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from meshchat_chat.domain import (
    Chat,
    ChatCursor,
    Member,
    Message,
    NewMessage,
    SendOutcome,
    SendResult,
)
from meshchat_runtime.database import PostgresDatabase, load_migrations
from meshchat_runtime.errors import NotFound
from meshchat_runtime.metrics import DatabaseMetrics
from meshchat_runtime.settings import DatabaseUrl

__all__ = ["MIGRATION_LOCK", "NOTIFY_CHANNEL", "PostgresStore"]

# The channel on which the store announces "<chat id>:<seq>" after a message is committed and
# "<chat id>:members" after a chat's membership changed or it was deleted.
NOTIFY_CHANNEL = "meshchat_chat"
# The advisory lock under which replicas starting together apply the migrations one at a time.
MIGRATION_LOCK = "meshchat_chat.migrations"

_CHAT_COLUMNS = (
    "c.id::text AS id, c.name, c.owner_id, c.created_at, c.last_seq, "
    "ARRAY(SELECT m.user_id FROM chat_members m WHERE m.chat_id = c.id "
    'ORDER BY m.joined_at, m.username COLLATE "C") AS member_ids, '
    "ARRAY(SELECT m.username FROM chat_members m WHERE m.chat_id = c.id "
    'ORDER BY m.joined_at, m.username COLLATE "C") AS member_names, '
    "ARRAY(SELECT m.joined_at FROM chat_members m WHERE m.chat_id = c.id "
    'ORDER BY m.joined_at, m.username COLLATE "C") AS member_joined'
)
_MESSAGE_COLUMNS = (
    "chat_id::text AS chat_id, seq, sender_id, sender_username, text, client_message_id, created_at"
)

_SEND = f"""
WITH existing AS (
    SELECT {_MESSAGE_COLUMNS} FROM messages
    WHERE %(client_id)s <> '' AND chat_id = %(chat)s::uuid AND sender_id = %(sender)s
      AND client_message_id = %(client_id)s
), bumped AS (
    UPDATE chats SET last_seq = last_seq + 1
    WHERE id = %(chat)s::uuid
      AND NOT EXISTS (SELECT 1 FROM existing)
      AND EXISTS (
          SELECT 1 FROM chat_members WHERE chat_id = %(chat)s::uuid AND user_id = %(sender)s
      )
    RETURNING id, last_seq
), inserted AS (
    INSERT INTO messages
        (chat_id, seq, sender_id, sender_username, text, client_message_id, created_at)
    SELECT id, last_seq, %(sender)s, %(username)s, %(text)s, %(client_id)s, %(created)s
    FROM bumped
    RETURNING {_MESSAGE_COLUMNS}
), notified AS (
    SELECT pg_notify('{NOTIFY_CHANNEL}', chat_id || ':' || seq) FROM inserted
)
SELECT true AS created, inserted.* FROM inserted CROSS JOIN (SELECT count(*) FROM notified) n
UNION ALL
SELECT false AS created, existing.* FROM existing
"""  # noqa: S608


def _chat(row: Mapping[str, Any]) -> Chat:
    return Chat(
        id=row["id"],
        name=row["name"],
        owner_id=row["owner_id"],
        created_at=row["created_at"],
        last_seq=row["last_seq"],
        members=tuple(
            Member(user_id, username, joined)
            for user_id, username, joined in zip(
                row["member_ids"], row["member_names"], row["member_joined"], strict=True
            )
        ),
    )


def _message(row: Mapping[str, Any]) -> Message:
    return Message(
        chat_id=row["chat_id"],
        seq=row["seq"],
        sender_id=row["sender_id"],
        sender_username=row["sender_username"],
        text=row["text"],
        client_message_id=row["client_message_id"],
        created_at=row["created_at"],
    )


class PostgresStore:
    """Chats, members and messages in PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    @classmethod
    async def open(
        cls, url: DatabaseUrl, *, pool_size: int = 10, metrics: DatabaseMetrics | None = None
    ) -> PostgresStore:
        """Open a pool of up to ``pool_size`` connections and migrate under the advisory lock."""
        db = PostgresDatabase(url, min_size=min(2, pool_size), max_size=pool_size, metrics=metrics)
        await db.open(load_migrations("meshchat_chat", "postgresql"), MIGRATION_LOCK)
        return cls(db)

    async def create_chat(self, chat: Chat) -> None:
        """Store a new chat with its members."""
        async with self._db.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO chats (id, name, owner_id, created_at, last_seq) "
                "VALUES (%s::uuid, %s, %s, %s, %s)",
                (chat.id, chat.name, chat.owner_id, chat.created_at, chat.last_seq),
            )
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO chat_members (chat_id, user_id, username, joined_at) "
                    "VALUES (%s::uuid, %s, %s, %s)",
                    [(chat.id, m.user_id, m.username, m.joined_at) for m in chat.members],
                )

    async def get_chat(self, chat_id: str) -> Chat | None:
        """The chat with its members, or None."""
        async with self._db.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_CHAT_COLUMNS} FROM chats c WHERE c.id = %s::uuid",  # noqa: S608
                (chat_id,),
            )
            row = await cur.fetchone()
        return _chat(row) if row is not None else None

    async def list_chats(self, user_id: str, limit: int, after: ChatCursor | None) -> list[Chat]:
        """The member's chats, newest first, after the cursor."""
        query = (
            f"SELECT {_CHAT_COLUMNS} FROM chats c "  # noqa: S608
            "WHERE c.id IN (SELECT chat_id FROM chat_members WHERE user_id = %s)"
        )
        params: list[object] = [user_id]
        if after is not None:
            query += " AND (c.created_at, c.id) < (%s, %s::uuid)"
            params += [after.created_at, after.chat_id]
        query += " ORDER BY c.created_at DESC, c.id DESC LIMIT %s"
        params.append(limit)
        async with self._db.connection() as conn:
            cur = await conn.execute(query.encode(), params)
            rows = await cur.fetchall()
        return [_chat(row) for row in rows]

    async def delete_chat(self, chat_id: str) -> bool:
        """Delete the chat (members and messages cascade) and announce it."""
        async with self._db.connection() as conn, conn.transaction():
            cur = await conn.execute("DELETE FROM chats WHERE id = %s::uuid", (chat_id,))
            deleted = cur.rowcount > 0
            if deleted:
                await self._announce_members(conn, chat_id)
            return deleted

    async def add_member(self, chat_id: str, member: Member) -> bool:
        """Add a member unless already one."""
        async with self._db.connection() as conn:
            try:
                cur = await conn.execute(
                    "INSERT INTO chat_members (chat_id, user_id, username, joined_at) "
                    "VALUES (%s::uuid, %s, %s, %s) ON CONFLICT (chat_id, user_id) DO NOTHING",
                    (chat_id, member.user_id, member.username, member.joined_at),
                )
            except pg_errors.ForeignKeyViolation:
                raise NotFound(f"chat {chat_id} not found") from None
            return cur.rowcount > 0

    async def remove_member(self, chat_id: str, user_id: str) -> bool:
        """Remove a member and announce it, so that their open streams end."""
        async with self._db.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "DELETE FROM chat_members WHERE chat_id = %s::uuid AND user_id = %s",
                (chat_id, user_id),
            )
            removed = cur.rowcount > 0
            if removed:
                await self._announce_members(conn, chat_id)
            return removed

    @staticmethod
    async def _announce_members(conn: psycopg.AsyncConnection[Any], chat_id: str) -> None:
        await conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, f"{chat_id}:members"))

    async def send_message(self, message: NewMessage) -> SendResult:
        """Store the message with the chat's next seq, or return the first one of a retry."""
        params = {
            "chat": message.chat_id,
            "sender": message.sender.user_id,
            "username": message.sender.username,
            "text": message.text,
            "client_id": message.client_message_id,
            "created": message.created_at,
        }
        async with self._db.connection() as conn:
            try:
                cur = await conn.execute(_SEND.encode(), params)
                row = await cur.fetchone()
            except pg_errors.UniqueViolation:
                # A concurrent retry with the same client_message_id won the race; this
                # statement rolled back, counter included, so the first message stands.
                cur = await conn.execute(
                    f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE chat_id = %s::uuid "  # noqa: S608
                    "AND sender_id = %s AND client_message_id = %s",
                    (message.chat_id, message.sender.user_id, message.client_message_id),
                )
                first = await cur.fetchone()
                if first is None:
                    raise
                return SendResult(SendOutcome.DUPLICATE, _message(first))
            if row is not None:
                outcome = SendOutcome.CREATED if row["created"] else SendOutcome.DUPLICATE
                return SendResult(outcome, _message(row))
            cur = await conn.execute("SELECT 1 FROM chats WHERE id = %s::uuid", (message.chat_id,))
            exists = await cur.fetchone() is not None
        return SendResult(SendOutcome.NOT_MEMBER if exists else SendOutcome.NO_CHAT)

    async def messages_after(self, chat_id: str, after_seq: int, limit: int) -> list[Message]:
        """Messages with seq > after_seq, ascending."""
        async with self._db.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE chat_id = %s::uuid AND seq > %s "  # noqa: S608
                "ORDER BY seq LIMIT %s",
                (chat_id, after_seq, limit),
            )
            rows = await cur.fetchall()
        return [_message(row) for row in rows]

    async def messages_before(
        self, chat_id: str, before_seq: int | None, limit: int
    ) -> list[Message]:
        """The newest messages with seq < before_seq, ascending."""
        bound = before_seq if before_seq is not None else 2**63 - 1
        async with self._db.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE chat_id = %s::uuid AND seq < %s "  # noqa: S608
                "ORDER BY seq DESC LIMIT %s",
                (chat_id, bound, limit),
            )
            rows = await cur.fetchall()
        return [_message(row) for row in reversed(rows)]

    async def last_seq(self, chat_id: str) -> int | None:
        """The chat's counter, or None."""
        async with self._db.connection() as conn:
            cur = await conn.execute("SELECT last_seq FROM chats WHERE id = %s::uuid", (chat_id,))
            row = await cur.fetchone()
        return int(row["last_seq"]) if row is not None else None

    async def ping(self) -> bool:
        """Whether a pooled connection answers."""
        return await self._db.ping()

    async def close(self) -> None:
        """Close the pool."""
        await self._db.close()
